//! The only globals a checkpoint may name, each interpreted here and never imported.

use super::{DType, PickleError, Result};

/// A global the allow-list knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Global {
    OrderedDict,
    Set,
    FrozenSet,
    /// `_codecs.encode(str, "latin1")`, which is how protocol 2 spells a bytes literal.
    CodecsEncode,
    RebuildTensor,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    TensorClass,
    /// A storage class; `None` is the untyped (byte) storage.
    StorageClass(Option<DType>),
    Device,
    Dtype(DType),
}

/// The global `module.name`, or an error naming it when the allow-list does not have it.
pub(super) fn resolve(module: &str, name: &str) -> Result<Global> {
    if module == "torch"
        && let Some(d) = DType::from_torch_attr(name)
    {
        return Ok(Global::Dtype(d));
    }
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("builtins" | "__builtin__", "set") => Global::Set,
        ("builtins" | "__builtin__", "frozenset") => Global::FrozenSet,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorClass,
        ("torch", "device") => Global::Device,
        ("torch" | "torch.storage", "UntypedStorage") => Global::StorageClass(None),
        // Checkpoints written from a GPU by old PyTorch name the CUDA classes; the bytes are
        // the same.
        ("torch" | "torch.cuda", n) if DType::from_storage_class(n).is_some() => {
            Global::StorageClass(DType::from_storage_class(n))
        }
        _ => {
            return Err(PickleError::Unsupported(format!(
                "unsupported pickle global {module}.{name}: only tensors, storages and dicts \
                 can be loaded, and nothing in a checkpoint is ever executed"
            )));
        }
    };
    Ok(g)
}
