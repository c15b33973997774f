"""Writes TensorFlow checkpoints for brs-model's tests/tfbundle.rs, and what they hold.

Usage: make_tf_bundle.py OUT_DIR

Writes, with TensorFlow itself (tensorflow-cpu, test-only):
  v1/       tf.compat.v1.train.Saver, one data shard: model.ckpt-5 and model.ckpt-10 with their
            'checkpoint' file, every dtype the reader converts, special floats, a tensor larger
            than TensorFlow's 1 MiB read buffer, a partitioned variable (saved in slices), and
            enough long-named variables that the index needs several data blocks
  sharded/  Saver(sharded=True) with variables on two CPU devices: model.ckpt-3 in 2 data shards
  tf2/      tf.train.Checkpoint: ckpt-1, whose object graph is a DT_STRING tensor
  model.pt  a PyTorch checkpoint (written by torch in a child process), given by mistake
  expected.json  every tensor's dtype, shape and values: floats as the bits of their float32
            value (so the Rust test compares exactly, NaN included), integers as integers
"""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

rng = np.random.default_rng(23)
v1 = tf.compat.v1


def describe(value, dtype):
    """What the Rust test expects from reading a tensor: f32 bits or i64 values. NumPy widens
    half and bfloat16 exactly and rounds double to nearest, as the reader must."""
    arr = np.asarray(value)
    entry = {"dtype": dtype.as_datatype_enum, "shape": list(arr.shape)}
    if dtype in (tf.float32, tf.float16, tf.float64, tf.bfloat16):
        # -1e300 becomes -inf, as Rust's `as f32` makes it.
        with np.errstate(over="ignore"):
            f32 = arr.astype(np.float32)
        entry["f32_bits"] = f32.reshape(-1).view(np.uint32).tolist()
    elif dtype in (tf.int64, tf.int32):
        entry["i64"] = [int(v) for v in arr.reshape(-1)]
    return entry


def v1_bundle(out):
    """Two saves of one graph, so the directory has an older and a latest checkpoint."""
    expected = {}
    graph = tf.Graph()
    with graph.as_default():
        values = {
            "generator/conv0/kernel": (
                rng.standard_normal((3, 3, 3, 8)).astype(np.float32),
                tf.float32,
            ),
            "generator/conv0/bias": (rng.standard_normal(8).astype(np.float32), tf.float32),
            "specials": (
                np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38], dtype=np.float32),
                tf.float32,
            ),
            "scalar": (np.float32(0.1), tf.float32),
            "empty": (np.zeros((0, 4), dtype=np.float32), tf.float32),
            "big": (rng.standard_normal((700, 500)).astype(np.float32), tf.float32),
            "half": (
                np.array(
                    [[1.0, -2.5, 65504.0, 6e-8, 0.1], [np.inf, -0.0, 1e-3, 3.0, -7.25]],
                    dtype=np.float16,
                ),
                tf.float16,
            ),
            "bf16": (np.array([1.5, -3.0, 0.1, 1e30], dtype=np.float32), tf.bfloat16),
            "double": (np.array([0.1, 1.0 / 3.0, -1e300, 5e-324], dtype=np.float64), tf.float64),
            "big_int": (np.array([2**40 + 3, -7, 2**62, -(2**63)], dtype=np.int64), tf.int64),
            "int32s": (np.array([-1, 0, 2**31 - 1, -(2**31)], dtype=np.int32), tf.int32),
            "flags": (np.array([True, False, True]), tf.bool),
        }
        for i in range(300):
            # Long names that share little with their neighbour, so the index outgrows one
            # 256 KiB data block (few variables: each costs graph-building time).
            values[f"many/v{i:05d}/" + "x" * 900] = (np.float32(i) / 7, tf.float32)
        variables = {}
        for name, (value, dtype) in values.items():
            variables[name] = v1.Variable(tf.constant(value, dtype=dtype), name=name)
        step = v1.train.get_or_create_global_step()
        v1.get_variable(
            "partitioned",
            shape=[10, 4],
            initializer=v1.random_normal_initializer(seed=1),
            partitioner=v1.fixed_size_partitioner(2),
        )
        saver = v1.train.Saver(max_to_keep=5)
        new_bias = rng.standard_normal(8).astype(np.float32)
        assign_bias = variables["generator/conv0/bias"].assign(new_bias)
        assign_step = step.assign(10)
        v1_prefix = os.path.join(out, "v1", "model.ckpt")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(step.assign(5))
            # No .meta graphs: the reader does not need them and they cost seconds to write.
            saver.save(sess, v1_prefix, global_step=5, write_meta_graph=False)
            old_bias = values["generator/conv0/bias"][0]
            sess.run([assign_bias, assign_step])
            saver.save(sess, v1_prefix, global_step=10, write_meta_graph=False)
            for name, var in variables.items():
                expected[name] = describe(sess.run(var), values[name][1])
            expected["global_step"] = describe(sess.run(step), tf.int64)
            expected["partitioned"] = {"dtype": 1, "shape": [10, 4], "sliced": 2}
    return expected, describe(old_bias, tf.float32)


def sharded_bundle(out):
    expected = {}
    graph = tf.Graph()
    with graph.as_default():
        variables = {}
        for device, names in (("/cpu:0", ["a/w", "a/b"]), ("/cpu:1", ["b/w", "b/step"])):
            with tf.device(device):
                for name in names:
                    if name.endswith("step"):
                        value, dtype = np.int64(3), tf.int64
                    else:
                        value, dtype = rng.standard_normal((4, 5)).astype(np.float32), tf.float32
                    variables[name] = (v1.Variable(value, dtype=dtype, name=name), dtype)
        saver = v1.train.Saver(sharded=True)
        config = v1.ConfigProto(device_count={"CPU": 2})
        with v1.Session(graph=graph, config=config) as sess:
            sess.run(v1.global_variables_initializer())
            prefix = os.path.join(out, "sharded", "model.ckpt")
            saver.save(sess, prefix, global_step=3, write_meta_graph=False)
            for name, (var, dtype) in variables.items():
                expected[name] = describe(sess.run(var), dtype)
    return expected


def tf2_bundle(out):
    w = tf.Variable(rng.standard_normal((2, 3)).astype(np.float32))
    ckpt = tf.train.Checkpoint(w=w)
    ckpt.save(os.path.join(out, "tf2", "ckpt"))
    return {
        "w/.ATTRIBUTES/VARIABLE_VALUE": describe(w.numpy(), tf.float32),
        "save_counter/.ATTRIBUTES/VARIABLE_VALUE": describe(ckpt.save_counter.numpy(), tf.int64),
        "_CHECKPOINTABLE_OBJECT_GRAPH": {"dtype": 7, "shape": []},
    }


def torch_file(out):
    # In a child process: torch and TensorFlow in one process fight over shared libraries.
    code = "import sys, torch; torch.save({'genA2B': {'w': torch.zeros(2)}}, sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, os.path.join(out, "model.pt")], check=True)


def main():
    out = sys.argv[1]
    for sub in ("v1", "sharded", "tf2"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    v1_tensors, old_bias = v1_bundle(out)
    expected = {
        "v1": {"prefix": "v1/model.ckpt-10", "num_shards": 1, "tensors": v1_tensors},
        "v1_step5_bias": old_bias,
        "sharded": {
            "prefix": "sharded/model.ckpt-3",
            "num_shards": 2,
            "tensors": sharded_bundle(out),
        },
        "tf2": {"prefix": "tf2/ckpt-1", "num_shards": 1, "tensors": tf2_bundle(out)},
    }
    torch_file(out)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
