//! Copies one tensor out of its storage, applying offset and strides, after proving every
//! element it touches lies inside the storage.

use super::budget::Budget;
use super::value::{StorageRef, TensorRef};
use super::{PickleError, RawTensor, Result, malformed};

/// Copies `t` out of storage `s`, whose bytes are `entry`.
pub(super) fn materialize(
    t: &TensorRef,
    s: &StorageRef,
    entry: &[u8],
    budget: &mut Budget,
) -> Result<RawTensor> {
    let storage_unit = s.dtype.map_or(1, |d| d.size());
    let (view_start, view_len) = match s.view {
        Some((offset, size)) => (offset, size),
        None => (0, s.numel),
    };
    let region = mul_add(view_start, storage_unit, 0)
        .zip(mul_add(view_len, storage_unit, 0))
        .and_then(|(start, len)| Some(start..start.checked_add(len)?))
        .and_then(|r| entry.get(r))
        .ok_or_else(|| {
            malformed(format!(
                "storage {:?} declares {} bytes but its data holds {}",
                s.key,
                view_len.saturating_mul(storage_unit),
                entry.len()
            ))
        })?;

    let es = t.dtype.size();
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| PickleError::TooLarge(format!("shape {:?} overflows", t.shape)))?;
    let nbytes = numel
        .checked_mul(es)
        .ok_or_else(|| PickleError::TooLarge(format!("shape {:?} overflows", t.shape)))?;
    budget.take(nbytes, &format!("a tensor of shape {:?}", t.shape))?;
    if numel == 0 {
        return Ok(RawTensor {
            dtype: t.dtype,
            shape: t.shape.clone(),
            data: Vec::new(),
        });
    }

    // Last element touched, in elements of the tensor's type.
    let mut last = t.offset;
    for (&d, &st) in t.shape.iter().zip(&t.stride) {
        last = (d - 1)
            .checked_mul(st)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| malformed("strides overflow"))?;
    }
    let end = last
        .checked_add(1)
        .and_then(|n| n.checked_mul(es))
        .filter(|&end| end <= region.len())
        .ok_or_else(|| {
            malformed(format!(
                "shape {:?} with strides {:?} and offset {} reaches past its storage of {} bytes",
                t.shape,
                t.stride,
                t.offset,
                region.len()
            ))
        })?;
    let oob = || malformed("element outside its storage");

    let mut data = Vec::with_capacity(nbytes);
    if is_contiguous(&t.shape, &t.stride) {
        let start = t.offset * es;
        data.extend_from_slice(region.get(start..start + nbytes).ok_or_else(oob)?);
    } else {
        // Odometer over the outer dimensions; the innermost one is copied as a run when its
        // stride is 1, element by element otherwise.
        let nd = t.shape.len();
        let (inner_len, inner_stride) = (t.shape[nd - 1], t.stride[nd - 1]);
        let mut idx = vec![0usize; nd - 1];
        'outer: loop {
            let base = idx
                .iter()
                .zip(&t.stride)
                .fold(t.offset, |acc, (&i, &st)| acc + i * st);
            if inner_stride == 1 {
                let start = base * es;
                data.extend_from_slice(region.get(start..start + inner_len * es).ok_or_else(oob)?);
            } else {
                for j in 0..inner_len {
                    let start = (base + j * inner_stride) * es;
                    data.extend_from_slice(region.get(start..start + es).ok_or_else(oob)?);
                }
            }
            let mut d = nd - 1;
            loop {
                if d == 0 {
                    break 'outer;
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    debug_assert!(end <= region.len() && data.len() == nbytes);
    Ok(RawTensor {
        dtype: t.dtype,
        shape: t.shape.clone(),
        data,
    })
}

fn mul_add(a: usize, b: usize, c: usize) -> Option<usize> {
    a.checked_mul(b)?.checked_add(c)
}

fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &st) in shape.iter().zip(stride).rev() {
        if d != 1 && st != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}
