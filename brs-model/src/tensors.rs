//! Named tensors to and from safetensors bytes, and loading them into a variable store with
//! every name and shape checked (tch would otherwise rename or silently skip).

use std::borrow::Cow;
use std::collections::BTreeMap;

use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => {
            return Err(ModelError::TensorType(format!("{other:?}")));
        }
    })
}

pub(crate) fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => {
            return Err(ModelError::TensorType(format!("{other:?}")));
        }
    })
}

/// Serialises named tensors; `as_kind` converts float tensors (e.g. to half for exports).
pub fn to_safetensors(named: &[(String, Tensor)], as_kind: Option<Kind>) -> Result<Vec<u8>> {
    let mut prepared = Vec::with_capacity(named.len());
    for (name, t) in named {
        let t = t.detach().to_device(Device::Cpu);
        let t = match as_kind {
            Some(kind) if t.is_floating_point() => t.to_kind(kind),
            _ => t,
        }
        .contiguous();
        let numel = t.numel();
        let dtype = dtype_of(t.kind())?;
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        prepared.push((name.clone(), Bytes { dtype, shape, data }));
    }
    let views = prepared.iter().map(|(n, b)| (n.as_str(), b));
    safetensors::serialize(views, None).map_err(ModelError::Safetensors)
}

/// Parses safetensors bytes into CPU tensors by name.
pub fn from_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>> {
    let st = SafeTensors::deserialize(bytes).map_err(ModelError::Safetensors)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype())?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Every variable of a store by name, sorted.
pub fn named_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The store's variable names (`ours`) and a file's (`theirs`) must be the same set; the error
/// names up to five extras of each side.
fn same_names<'a>(
    ours: impl IntoIterator<Item = &'a String>,
    theirs: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    let ours: std::collections::BTreeSet<&String> = ours.into_iter().collect();
    let theirs: std::collections::BTreeSet<&String> = theirs.into_iter().collect();
    let missing: Vec<&&String> = ours.difference(&theirs).collect();
    let unexpected: Vec<&&String> = theirs.difference(&ours).collect();
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    Err(ModelError::Shape(format!(
        "missing {} variables {:?}; unexpected {} variables {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        unexpected.len(),
        unexpected.iter().take(5).collect::<Vec<_>>()
    )))
}

/// The largest safetensors header read (safetensors' own limit).
const MAX_HEADER: u64 = 100_000_000;
/// Bytes copied per step when streaming a tensor into its variable: a multiple of every element
/// width.
const STREAM_CHUNK: usize = 8 << 20;

/// Streams a safetensors file from `reader` into the store's variables: the weights are in memory
/// once (in the variables) rather than three times (the file's bytes, tensors built from them,
/// then the variables), which for a full 256 px generator is 1.1 GiB instead of 3.3 at load.
/// Names and shapes must match the store exactly, as in [`load_into`]; dtypes are converted.
/// Returns the number of bytes read. Every byte goes through `seen` (a hash, say) in file
/// order. On an error the variables may hold part of the file: the caller discards them.
pub fn stream_into(
    vs: &VarStore,
    reader: &mut impl std::io::Read,
    seen: &mut impl FnMut(&[u8]),
) -> Result<u64> {
    let corrupt = |reason: String| ModelError::Shape(format!("safetensors: {reason}"));
    let mut read = |buf: &mut [u8], seen: &mut dyn FnMut(&[u8])| -> Result<()> {
        reader
            .read_exact(buf)
            .map_err(|e| corrupt(format!("cut short: {e}")))?;
        seen(buf);
        Ok(())
    };
    let mut len = [0u8; 8];
    read(&mut len, seen)?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER {
        return Err(corrupt(format!("a header of {header_len} bytes")));
    }
    let mut header = vec![0u8; header_len as usize];
    read(&mut header, seen)?;
    let meta: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("header: {e}")))?;
    let infos = meta.tensors();
    let vars = vs.variables();
    same_names(vars.keys(), infos.keys())?;
    // In file order: the metadata's validation guarantees the tensors tile the data section.
    let mut order: Vec<(&String, &&safetensors::tensor::TensorInfo)> = infos.iter().collect();
    order.sort_by_key(|(_, info)| info.data_offsets.0);
    let mut chunk = vec![0u8; STREAM_CHUNK];
    tch::no_grad(|| -> Result<()> {
        for (name, info) in order {
            let var = &vars[name.as_str()];
            let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
            if shape != var.size() {
                return Err(ModelError::Shape(format!(
                    "{name}: checkpoint has shape {shape:?}, the network expects {:?}",
                    var.size()
                )));
            }
            let kind = kind_of(info.dtype)?;
            let width = info.dtype.bitsize() / 8;
            let (start, end) = info.data_offsets;
            let flat = var.view(-1);
            let mut done = 0usize;
            while done < end - start {
                let n = (end - start - done).min(STREAM_CHUNK);
                read(&mut chunk[..n], seen)?;
                let part = Tensor::f_from_data_size(&chunk[..n], &[(n / width) as i64], kind)?;
                flat.narrow(0, (done / width) as i64, (n / width) as i64)
                    .f_copy_(&part)?;
                done += n;
            }
        }
        Ok(())
    })?;
    Ok(8 + header_len + meta.data_len() as u64)
}

/// Copies `tensors` into the store's variables. The name sets must match exactly and every shape
/// must agree; dtype and device are converted to the variable's.
pub fn load_into(vs: &VarStore, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let vars = vs.variables();
    same_names(vars.keys(), tensors.keys())?;
    for (name, var) in &vars {
        let src = &tensors[name];
        if src.size() != var.size() {
            return Err(ModelError::Shape(format!(
                "{name}: checkpoint has shape {:?}, the network expects {:?}",
                src.size(),
                var.size()
            )));
        }
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in &vars {
            let src = tensors[name].to_kind(var.kind()).to_device(var.device());
            var.shallow_clone().f_copy_(&src)?;
        }
        Ok(())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values_and_kinds() {
        let a = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        let b = Tensor::arange(5, (Kind::Int64, Device::Cpu));
        let bytes =
            to_safetensors(&[("a".into(), a.copy()), ("b".into(), b.copy())], None).unwrap();
        let back = from_safetensors(&bytes).unwrap();
        assert!(back["a"].equal(&a));
        assert!(back["b"].equal(&b));
        let half = to_safetensors(&[("a".into(), a.copy())], Some(Kind::Half)).unwrap();
        let back = from_safetensors(&half).unwrap();
        assert_eq!(back["a"].kind(), Kind::Half);
        assert!(half.len() < bytes.len());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(from_safetensors(b"").is_err());
        assert!(from_safetensors(&[0xff; 64]).is_err());
    }

    #[test]
    fn load_into_checks_names_and_shapes() {
        let vs = VarStore::new(Device::Cpu);
        let _w = vs.root().zeros("w", &[2, 2]);
        let wrong_shape = BTreeMap::from([(
            "w".to_string(),
            Tensor::ones([3], (Kind::Float, Device::Cpu)),
        )]);
        assert!(
            load_into(&vs, &wrong_shape)
                .unwrap_err()
                .to_string()
                .contains("shape")
        );
        let wrong_name = BTreeMap::from([(
            "x".to_string(),
            Tensor::ones([2, 2], (Kind::Float, Device::Cpu)),
        )]);
        assert!(
            load_into(&vs, &wrong_name)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
        let right = BTreeMap::from([(
            "w".to_string(),
            Tensor::ones([2, 2], (Kind::Double, Device::Cpu)),
        )]);
        load_into(&vs, &right).unwrap();
        assert_eq!(vs.variables()["w"].sum(Kind::Float).double_value(&[]), 4.0);
    }

    #[test]
    fn stream_into_fills_the_variables_and_sees_every_byte() {
        // A tensor larger than one streaming chunk, another after it, and half precision.
        let big = Tensor::randn([STREAM_CHUNK as i64 / 4 + 7], (Kind::Float, Device::Cpu));
        let small = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
        let named = [
            ("big".to_string(), big.copy()),
            ("small".to_string(), small.copy()),
        ];
        for kind in [None, Some(Kind::Half)] {
            let bytes = to_safetensors(&named, kind).unwrap();
            let vs = VarStore::new(Device::Cpu);
            let (b, s) = (
                vs.root().zeros("big", &big.size()),
                vs.root().zeros("small", &[3, 5]),
            );
            let mut seen = Vec::new();
            let n = stream_into(&vs, &mut bytes.as_slice(), &mut |chunk: &[u8]| {
                seen.extend_from_slice(chunk)
            })
            .unwrap();
            assert_eq!(
                (n as usize, seen.as_slice()),
                (bytes.len(), bytes.as_slice())
            );
            let tolerance = if kind.is_some() { 1e-2 } else { 0.0 };
            for (ours, theirs) in [(&b, &big), (&s, &small)] {
                let diff = (ours - theirs).abs().max().double_value(&[]);
                assert!(
                    diff <= tolerance * theirs.abs().max().double_value(&[]),
                    "{diff}"
                );
            }
            // Cut short: an error, not a panic.
            let cut = &bytes[..bytes.len() - 10];
            let err = stream_into(&vs, &mut &cut[..], &mut |_: &[u8]| {}).unwrap_err();
            assert!(err.to_string().contains("cut short"), "{err}");
        }
        // Names and shapes are checked as load_into checks them.
        let bytes = to_safetensors(&named, None).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().zeros("big", &big.size());
        let _ = vs.root().zeros("small", &[5, 3]);
        let err = stream_into(&vs, &mut bytes.as_slice(), &mut |_: &[u8]| {}).unwrap_err();
        assert!(err.to_string().contains("shape"), "{err}");
    }
}
