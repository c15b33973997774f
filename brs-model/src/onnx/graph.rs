//! An ONNX graph in memory (nodes, initializers, inputs and outputs) and its encoding as a
//! `ModelProto`, with the weights either inside the message or in an external data file.
//!
//! Field numbers are those of `onnx/onnx.proto` (ONNX 1.12+, IR version 8 and later).

use super::proto::Message;

/// IR version 8 is the one of ONNX 1.12, the release that introduced opset 17.
pub(crate) const IR_VERSION: i64 = 8;
/// The default-domain opset every node is written for.
pub(crate) const OPSET: i64 = 17;

/// `TensorProto.DataType`.
const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// An attribute of a node.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    String(&'static str),
}

#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) op: &'static str,
    pub(crate) name: String,
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<String>,
    pub(crate) attrs: Vec<(&'static str, Attr)>,
}

/// The values of a constant tensor.
#[derive(Debug)]
pub(crate) enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Data {
    fn bytes(&self) -> u64 {
        match self {
            Data::F32(v) => 4 * v.len() as u64,
            Data::I64(v) => 8 * v.len() as u64,
        }
    }
}

/// A named constant: a weight, or a shape, axis or scalar the graph needs.
#[derive(Debug)]
pub(crate) struct Initializer {
    pub(crate) name: String,
    pub(crate) dims: Vec<i64>,
    pub(crate) data: Data,
}

/// A dimension of a graph input or output: fixed, or named (dynamic).
#[derive(Debug, Clone)]
pub(crate) enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// A float32 graph input or output.
#[derive(Debug)]
pub(crate) struct ValueInfo {
    pub(crate) name: String,
    pub(crate) dims: Vec<Dim>,
    pub(crate) doc: String,
}

#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) name: String,
    pub(crate) doc: String,
    pub(crate) nodes: Vec<Node>,
    pub(crate) initializers: Vec<Initializer>,
    pub(crate) inputs: Vec<ValueInfo>,
    pub(crate) outputs: Vec<ValueInfo>,
}

/// Where an initializer's values live in the external data file.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub(crate) offset: u64,
    pub(crate) length: u64,
}

/// How the weights are stored: in the message, or in a file next to it.
#[derive(Debug)]
pub(crate) enum Storage<'p> {
    Inline,
    /// `location` is the data file's name relative to the model's directory; `placements`
    /// holds one entry per initializer (None: that one stays inline).
    External {
        location: &'p str,
        placements: &'p [Option<Placement>],
    },
}

/// Model-level strings: who wrote it and what it is.
#[derive(Debug)]
pub(crate) struct ModelInfo {
    pub(crate) producer_version: &'static str,
    pub(crate) doc: String,
    pub(crate) metadata: Vec<(String, String)>,
}

/// Initializers below this size always stay inside the message (onnx's own threshold for
/// `save_as_external_data`): shapes, axes and scalars are read while the graph is built.
pub(crate) const EXTERNAL_MIN_BYTES: u64 = 1024;

/// Where each initializer goes when weights are external: at offsets aligned to 4 KiB (so a
/// runtime can map them), the small ones inline. Returns the placements and the file's length.
pub(crate) fn place_external(initializers: &[Initializer]) -> (Vec<Option<Placement>>, u64) {
    let mut offset = 0u64;
    let placements = initializers
        .iter()
        .map(|init| {
            let length = init.data.bytes();
            (length >= EXTERNAL_MIN_BYTES).then(|| {
                offset = offset.next_multiple_of(4096);
                let p = Placement { offset, length };
                offset += length;
                p
            })
        })
        .collect();
    (placements, offset)
}

fn string_entry(key: &str, value: &str) -> Message<'static> {
    let mut m = Message::new();
    m.string(1, key);
    m.string(2, value);
    m
}

fn attribute(name: &str, value: &Attr) -> Message<'static> {
    // AttributeProto: name 1, f 2, i 3, s 4, ints 8, type 20 (FLOAT 1, INT 2, STRING 3, INTS 7).
    let mut m = Message::new();
    m.string(1, name);
    match value {
        Attr::Float(f) => {
            m.float(2, *f);
            m.int32(20, 1);
        }
        Attr::Int(i) => {
            m.int64(3, *i);
            m.int32(20, 2);
        }
        Attr::String(s) => {
            m.string(4, s);
            m.int32(20, 3);
        }
        Attr::Ints(v) => {
            for i in v {
                m.int64(8, *i);
            }
            m.int32(20, 7);
        }
    }
    m
}

fn node(n: &Node) -> Message<'static> {
    // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
    let mut m = Message::new();
    for i in &n.inputs {
        m.string(1, i);
    }
    for o in &n.outputs {
        m.string(2, o);
    }
    m.string(3, &n.name);
    m.string(4, n.op);
    for (name, value) in &n.attrs {
        m.message(5, attribute(name, value));
    }
    m
}

fn tensor<'a>(init: &'a Initializer, external: Option<(&str, &Placement)>) -> Message<'a> {
    // TensorProto: dims 1, data_type 2, int64_data 7, name 8, raw_data 9, external_data 13,
    // data_location 14 (EXTERNAL = 1).
    let mut m = Message::new();
    for d in &init.dims {
        m.int64(1, *d);
    }
    m.int32(
        2,
        match init.data {
            Data::F32(_) => FLOAT,
            Data::I64(_) => INT64,
        },
    );
    m.string(8, &init.name);
    match (external, &init.data) {
        (Some((location, p)), _) => {
            m.message(13, string_entry("location", location));
            m.message(13, string_entry("offset", &p.offset.to_string()));
            m.message(13, string_entry("length", &p.length.to_string()));
            m.int32(14, 1);
        }
        (None, Data::F32(values)) => m.float_bytes(9, values),
        (None, Data::I64(values)) => {
            let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            m.bytes(9, &raw);
        }
    }
    m
}

fn value_info(v: &ValueInfo) -> Message<'static> {
    // ValueInfoProto { name 1, type 2: TypeProto { tensor_type 1: { elem_type 1, shape 2:
    // TensorShapeProto { dim 1: { dim_value 1 | dim_param 2 } } } }, doc_string 3 }.
    let mut shape = Message::new();
    for d in &v.dims {
        let mut dim = Message::new();
        match d {
            Dim::Fixed(n) => dim.int64(1, *n),
            Dim::Named(s) => dim.string(2, s),
        }
        shape.message(1, dim);
    }
    let mut tensor_type = Message::new();
    tensor_type.int32(1, FLOAT);
    tensor_type.message(2, shape);
    let mut ty = Message::new();
    ty.message(1, tensor_type);
    let mut m = Message::new();
    m.string(1, &v.name);
    m.message(2, ty);
    m.string(3, &v.doc);
    m
}

/// Encodes the whole `ModelProto`. Tensor data stays borrowed from `graph`.
pub(crate) fn model<'a>(graph: &'a Graph, info: &ModelInfo, storage: &Storage<'_>) -> Message<'a> {
    // GraphProto: node 1, name 2, initializer 5, doc_string 10, input 11, output 12.
    let mut g = Message::new();
    for n in &graph.nodes {
        g.message(1, node(n));
    }
    g.string(2, &graph.name);
    for (i, init) in graph.initializers.iter().enumerate() {
        let external = match storage {
            Storage::Inline => None,
            Storage::External {
                location,
                placements,
            } => placements
                .get(i)
                .and_then(|p| p.as_ref())
                .map(|p| (*location, p)),
        };
        g.message(5, tensor(init, external));
    }
    g.string(10, &graph.doc);
    for v in &graph.inputs {
        g.message(11, value_info(v));
    }
    for v in &graph.outputs {
        g.message(12, value_info(v));
    }
    // ModelProto: ir_version 1, producer_name 2, producer_version 3, doc_string 6, graph 7,
    // opset_import 8 (OperatorSetIdProto: domain 1, version 2; the default domain is ""),
    // metadata_props 14.
    let mut m = Message::new();
    m.int64(1, IR_VERSION);
    m.string(2, "brs");
    m.string(3, info.producer_version);
    m.string(6, &info.doc);
    m.message(7, g);
    let mut opset = Message::new();
    opset.string(1, "");
    opset.int64(2, OPSET);
    m.message(8, opset);
    for (k, v) in &info.metadata {
        m.message(14, string_entry(k, v));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(name: &str, n: usize) -> Initializer {
        Initializer {
            name: name.into(),
            dims: vec![n as i64],
            data: Data::F32(vec![0.5; n]),
        }
    }

    #[test]
    fn external_placement_is_aligned_and_keeps_small_tensors_inline() {
        let inits = [init("big", 1000), init("tiny", 3), init("big2", 300)];
        let (placements, len) = place_external(&inits);
        let p0 = placements[0].clone().unwrap_or(Placement {
            offset: 9,
            length: 9,
        });
        assert_eq!((p0.offset, p0.length), (0, 4000));
        assert!(placements[1].is_none(), "12 bytes stay inline");
        let p2 = placements[2].clone().unwrap_or(Placement {
            offset: 9,
            length: 9,
        });
        assert_eq!((p2.offset, p2.length), (4096, 1200));
        assert_eq!(len, 4096 + 1200);
    }

    #[test]
    fn an_external_tensor_names_its_file_and_holds_no_data() {
        let big = init("w", 1000);
        let inline = tensor(&big, None);
        let p = Placement {
            offset: 4096,
            length: 4000,
        };
        let external = tensor(&big, Some(("m.onnx.data", &p)));
        assert!(inline.len() > 4000);
        assert!(external.len() < 100);
        let bytes = external.to_vec();
        let text = String::from_utf8_lossy(&bytes);
        for s in [
            "location",
            "m.onnx.data",
            "offset",
            "4096",
            "length",
            "4000",
        ] {
            assert!(text.contains(s), "{s} in {text:?}");
        }
        // data_location = EXTERNAL, the last field.
        assert_eq!(&bytes[bytes.len() - 2..], &[0x70, 0x01]);
    }
}
