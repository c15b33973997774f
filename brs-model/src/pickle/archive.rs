//! The zip layout of PyTorch >= 1.6: `<name>/data.pkl`, `<name>/byteorder` and one
//! `<name>/data/<key>` entry per storage.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::rc::Rc;

use super::budget::Budget;
use super::machine::unpickle;
use super::plan::plan_output;
use super::value::Heap;
use super::{PickleError, PtFile, Result, malformed};

fn zip_err(e: zip::result::ZipError) -> PickleError {
    PickleError::Zip(e.to_string())
}

pub(super) fn read(bytes: &[u8], budget: &mut Budget) -> Result<PtFile> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_err)?;
    // The folder name is whatever the file was called when saved, so find it by its pickle.
    let pkl_name = archive
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| (n.len(), n.to_string()))
        .map(str::to_owned)
        .ok_or_else(|| {
            PickleError::Zip("no data.pkl entry: not a torch.save archive".to_owned())
        })?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_owned();

    let byteorder_name = format!("{prefix}byteorder");
    if archive.index_for_name(&byteorder_name).is_some() {
        let order = read_entry(&mut archive, bytes, &byteorder_name, budget)?;
        if order.as_ref() != b"little" {
            return Err(PickleError::Unsupported(format!(
                "unsupported byte order {:?}: only little-endian checkpoints can be read",
                String::from_utf8_lossy(&order)
            )));
        }
    }

    let pickle = read_entry(&mut archive, bytes, &pkl_name, budget)?;
    let mut heap = Heap::default();
    let (top, _) = unpickle(&pickle, &mut heap, budget)?;

    let mut cache: HashMap<Rc<str>, Cow<'_, [u8]>> = HashMap::new();
    let mut load = |key: &Rc<str>, budget: &mut Budget| -> Result<()> {
        if !cache.contains_key(key) {
            let name = format!("{prefix}data/{key}");
            if archive.index_for_name(&name).is_none() {
                return Err(malformed(format!(
                    "storage {key:?} is referenced but the archive has no entry {name:?}"
                )));
            }
            let data = read_entry(&mut archive, bytes, &name, budget)?;
            cache.insert(key.clone(), data);
        }
        Ok(())
    };
    // Load only the storages of the state dicts we return: skipped values (optimizer state,
    // say) cost nothing and cannot fail the load through their storages.
    let plan = plan_output(&heap, &top, budget)?;
    for key in plan.storage_keys(&heap) {
        load(&key, budget)?;
    }
    plan.build(&heap, budget, |key| {
        cache
            .get(key)
            .map(|c| c.as_ref())
            .ok_or_else(|| malformed(format!("storage {key:?} was not loaded")))
    })
}

/// One entry's bytes. Stored entries (all that torch.save writes) are borrowed from the input;
/// compressed ones are inflated under the budget.
fn read_entry<'a>(
    archive: &mut zip::ZipArchive<Cursor<&'a [u8]>>,
    bytes: &'a [u8],
    name: &str,
    budget: &mut Budget,
) -> Result<Cow<'a, [u8]>> {
    let mut file = archive.by_name(name).map_err(zip_err)?;
    if file.encrypted() {
        return Err(PickleError::Unsupported(format!(
            "unsupported encrypted zip entry {name:?}"
        )));
    }
    if file.compression() == zip::CompressionMethod::Stored
        && let Some(start) = file.data_start()
    {
        let slice = usize::try_from(start)
            .ok()
            .zip(usize::try_from(file.size()).ok())
            .and_then(|(s, n)| Some((s, s.checked_add(n)?)))
            .and_then(|(s, e)| bytes.get(s..e))
            .ok_or_else(|| {
                PickleError::Zip(format!("entry {name:?} extends past the end of the file"))
            })?;
        // Borrow instead of copying, but still stream the entry through the zip reader so
        // its checksum is verified (by the optimised dependency, not by this crate).
        std::io::copy(&mut file, &mut std::io::sink())
            .map_err(|e| PickleError::Zip(format!("entry {name:?} is corrupt: {e}")))?;
        return Ok(Cow::Borrowed(slice));
    }
    let cap = budget.left();
    let declared = usize::try_from(file.size()).unwrap_or(usize::MAX);
    if declared > cap {
        return Err(PickleError::TooLarge(format!(
            "entry {name:?} inflates to {declared} bytes"
        )));
    }
    let mut out = Vec::new();
    (&mut file)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| PickleError::Zip(format!("cannot read entry {name:?}: {e}")))?;
    budget.take(out.len(), &format!("entry {name:?}"))?;
    Ok(Cow::Owned(out))
}
