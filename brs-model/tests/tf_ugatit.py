"""Our TensorFlow 2 (tf.compat.v1 graph mode) port of the official TensorFlow U-GAT-IT
(github.com/taki0112/UGATIT: ops.py, UGATIT.py, main.py), for brs-model's importer parity tests.

It builds the official graphs with the official variable scopes and names (tf.layers and
tf.contrib are gone from TensorFlow 2, so small stand-ins create the very same variables with
tf.compat.v1.get_variable), writes real TensorFlow checkpoints exactly where the official save()
puts them, and writes what TensorFlow computes from them. Only the official defaults are built:
gan_type lsgan, spectral norm on, n_critic 1, weights adv 1 / cycle 10 / identity 10 / cam 1000,
dataset name selfie2anime (it only names the checkpoint directory).

Usage (python tf_ugatit.py SUBCOMMAND --out DIR [options]):

  forward --out DIR [--ch 8] [--img 128] [--light] [--n-res 4] [--n-dis 6] [--no-smoothing]
          [--seed 0] [--batch 2] [--adam] [--step 1000] [--extra-variable NAME]...
          [--drop-variable NAME]... [--generators-only]
      Builds the official training graph (with --adam also both Adam optimizers), gives every
      variable random values, saves DIR/checkpoint/<model_dir>/<model_name>.model-<step>, then
      restores it into the official test graph (plus both discriminators) and runs it on random
      inputs. Writes a.f32, b.f32 (inputs), a2b.f32 and a2b_cam.f32 (generator_B on a),
      b2a.f32 and b2a_cam.f32 (generator_A on b), dis_{a,b}_{local,global}.f32 and
      dis_{a,b}_{local,global}_cam.f32 (discriminator_A on a, discriminator_B on b), and
      parity.json (options, checkpoint prefix, every array's file and shape, every saved
      variable's name and shape, which spectral-norm u the discriminator outputs used).
      --generators-only saves the generators alone (as forks that export for inference do)
      and runs the test graph without the discriminators.

  step --out DIR [--ch 8] [--img 128] [--light] [--n-res 4] [--n-dis 6] [--no-smoothing]
       [--seed 0] [--batch 1] [--lr 1e-4]
      Builds the official training graph, gives every variable (Adam's too) random values,
      saves step 1, runs one official iteration (D update, then G update) on the inputs a.f32
      and b.f32, saves step 2 in the same directory, and writes step.json: every loss term of
      both updates, and what spectral norm's u did (see SPECTRAL_NORM_U).

Arrays are raw little-endian float32, NHWC, images in [-1, 1]. Sizes: the generator needs
--img divisible by 4 and --n-res 4 (the official MLP is ch * n_res wide but the bottleneck has
ch * 4 channels); the discriminators' stride-1 4x4 convs reflect-pad 2 at the bottom/right, so
the global branch needs img / 2^(n_dis-1) >= 3: n_dis 6 (the official default) needs img >= 96,
img 64 takes n_dis <= 5, img 32 n_dis <= 4.

Not ported, as the official training never uses them: the heatmaps (computed, never used), the
gradient penalties (wgan / dragan only), the summaries. The official train() pulls a new batch
from its tf.data iterators in every sess.run, so its D and G updates see different images; here
both updates are fed the same a and b, which is what the official run does with one image per
domain (and augmentation off).

Where this graph differs from the official one, each time to make it deterministic:
  - variables are resource variables (TF1's were ref variables), and all spectral_norm() calls on
    one u share one read of it per session.run (see SPECTRAL_NORM_U);
  - each Adam update has a control dependency on its loss, so the losses a step reports are
    always those of the weights it updates (TF1 left that order to the scheduler).
The MLP reshapes gamma and beta to the batch of the graph's inputs (officially args.batch_size).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

v1 = tf.compat.v1

SPECTRAL_NORM_U = (
    "spectral_norm() does one power iteration from u and assigns the result to u, as a control "
    "dependency of the normalised kernel, in every call: every call of a discriminator assigns "
    "each of its conv u once and its CAM_logit u twice (CAM_logit is called for GAP and for GMP). "
    "In the official TF1 graph every call reads u through the one u/read snapshot of a ref "
    "variable; that snapshot aliases the variable's buffer and Assign copies into it in place, so "
    "a call whose first matmul ran after another call's assign would start from the updated u. "
    "The graph does not order them, so TF1 is nondeterministic in principle; in practice those "
    "matmuls are ready when the step starts while an assign waits for a chain of ops, so they "
    "most likely run first. This port keeps TF1's one read of u per session.run, shared by every "
    "call, but as a resource-variable read, an immutable snapshot that every assign depends on: "
    "every call starts from the u the run began with, and since the kernel is also the same in "
    "every call of a run, every assign writes the same value. So one session.run moves each u "
    "exactly one power iteration (u <- l2n(l2n(u W^T) W), W the kernel reshaped to [-1, out]) "
    "from its value at the start of the run, with W as the run read it, whatever the number of "
    "calls."
)

WEIGHT_INIT = tf.random_normal_initializer(mean=0.0, stddev=0.02)
WEIGHT_DECAY = 0.0001
GAN_TYPE = "lsgan"
ADV_WEIGHT, CYCLE_WEIGHT, IDENTITY_WEIGHT, CAM_WEIGHT = 1, 10, 10, 1000


##################################################################################
# Layers (ops.py)
##################################################################################


def l2_regularizer(weights):
    """tf.contrib.layers.l2_regularizer(0.0001): scale * sum(w^2) / 2. get_variable puts the
    result in REGULARIZATION_LOSSES under '<variable name>/Regularizer/', as TF1 did."""
    with tf.name_scope("l2_regularizer"):
        scale = tf.constant(WEIGHT_DECAY, dtype=weights.dtype.base_dtype, name="scale")
        return tf.multiply(scale, tf.nn.l2_loss(weights))


def kernel_variable(shape):
    return v1.get_variable("kernel", shape, initializer=WEIGHT_INIT, regularizer=l2_regularizer)


def bias_variable(units):
    return v1.get_variable("bias", [units], initializer=tf.constant_initializer(0.0))


def layers_conv2d(x, filters, kernel, stride):
    """tf.layers.conv2d(use_bias=True, padding='valid'): its variables live in a sub-scope
    'conv2d' of the caller's scope."""
    with v1.variable_scope("conv2d"):
        w = kernel_variable([kernel, kernel, x.shape[-1], filters])
        x = tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding="VALID")
        return tf.nn.bias_add(x, bias_variable(filters))


def layers_dense(x, units):
    """tf.layers.dense(use_bias=True) on a rank-2 input, in a sub-scope 'dense'."""
    with v1.variable_scope("dense"):
        w = kernel_variable([x.shape[-1], units])
        return tf.nn.bias_add(tf.matmul(x, w), bias_variable(units))


def conv(x, channels, kernel=4, stride=2, pad=0, sn=False, scope="conv_0"):
    """ops.conv with use_bias=True; every padded conv of U-GAT-IT reflect-pads. When
    kernel - stride is odd the padding is asymmetric: pad at the top/left, the rest
    (kernel - stride - pad) at the bottom/right."""
    with v1.variable_scope(scope):
        if pad > 0:
            after = pad if (kernel - stride) % 2 == 0 else kernel - stride - pad
            x = tf.pad(x, [[0, 0], [pad, after], [pad, after], [0, 0]], mode="REFLECT")
        if not sn:
            return layers_conv2d(x, channels, kernel, stride)
        w = kernel_variable([kernel, kernel, x.shape[-1], channels])
        x = tf.nn.conv2d(x, spectral_norm(w), strides=[1, stride, stride, 1], padding="VALID")
        return tf.nn.bias_add(x, bias_variable(channels))


def fully_connected_with_w(x, sn=False, reuse=False, scope="linear"):
    """The CAM logit: one unit with bias. Also returns the per-channel weights the official code
    multiplies the feature map by: the (spectral-normed) kernel column plus the bias."""
    with v1.variable_scope(scope, reuse=reuse):
        x = flatten(x)
        w = kernel_variable([x.shape[-1], 1])
        if sn:
            w = spectral_norm(w)
        bias = bias_variable(1)
        x = tf.matmul(x, w) + bias
        weights = tf.gather(tf.transpose(tf.nn.bias_add(w, bias)), 0)
        return x, weights


def fully_connected(x, units, scope="linear"):
    """ops.fully_connected with use_bias=True, sn=False (the only way U-GAT-IT calls it)."""
    with v1.variable_scope(scope):
        return layers_dense(flatten(x), units)


def flatten(x):
    """tf.layers.flatten: [N, ...] -> [N, -1] in NHWC order."""
    return tf.reshape(x, [x.shape[0], -1])


##################################################################################
# Residual blocks, sampling, activations (ops.py)
##################################################################################


def resblock(x_init, channels, scope="resblock_0"):
    with v1.variable_scope(scope):
        with v1.variable_scope("res1"):
            x = conv(x_init, channels, kernel=3, stride=1, pad=1)
            x = relu(instance_norm(x))
        with v1.variable_scope("res2"):
            x = conv(x, channels, kernel=3, stride=1, pad=1)
            x = instance_norm(x)
        return x + x_init


def adaptive_ins_layer_resblock(x_init, channels, gamma, beta, smoothing, scope):
    with v1.variable_scope(scope):
        with v1.variable_scope("res1"):
            x = conv(x_init, channels, kernel=3, stride=1, pad=1)
            x = relu(adaptive_instance_layer_norm(x, gamma, beta, smoothing))
        with v1.variable_scope("res2"):
            x = conv(x, channels, kernel=3, stride=1, pad=1)
            x = adaptive_instance_layer_norm(x, gamma, beta, smoothing)
        return x + x_init


def up_sample(x, scale_factor=2):
    _, h, w, _ = x.shape.as_list()
    return v1.image.resize_nearest_neighbor(x, size=[h * scale_factor, w * scale_factor])


def global_avg_pooling(x):
    return tf.reduce_mean(x, axis=[1, 2])


def global_max_pooling(x):
    return tf.reduce_max(x, axis=[1, 2])


def lrelu(x, alpha):
    return tf.nn.leaky_relu(x, alpha)


def relu(x):
    return tf.nn.relu(x)


def tanh(x):
    return tf.tanh(x)


##################################################################################
# Normalisation (ops.py)
##################################################################################


def clip_rho(rho):
    """The rho variables' constraint; TF1's optimizer assigns it after each update."""
    return tf.clip_by_value(rho, clip_value_min=0.0, clip_value_max=1.0)


def instance_and_layer_normalised(x, eps=1e-5):
    """The two normalisations AdaLIN and ILN mix (tf.nn.moments: biased variances)."""
    ins_mean, ins_sigma = v1.nn.moments(x, axes=[1, 2], keep_dims=True)
    x_ins = (x - ins_mean) / tf.sqrt(ins_sigma + eps)
    ln_mean, ln_sigma = v1.nn.moments(x, axes=[1, 2, 3], keep_dims=True)
    x_ln = (x - ln_mean) / tf.sqrt(ln_sigma + eps)
    return x_ins, x_ln


def adaptive_instance_layer_norm(x, gamma, beta, smoothing, scope="instance_layer_norm"):
    """AdaLIN: rho starts at 1; with smoothing the mix uses clip(rho - 0.1, 0, 1)."""
    with v1.variable_scope(scope):
        x_ins, x_ln = instance_and_layer_normalised(x)
        rho = v1.get_variable(
            "rho", [x.shape[-1]], initializer=tf.constant_initializer(1.0), constraint=clip_rho
        )
        if smoothing:
            rho = tf.clip_by_value(rho - tf.constant(0.1), 0.0, 1.0)
        x_hat = rho * x_ins + (1 - rho) * x_ln
        return x_hat * gamma + beta


def instance_norm(x, scope="instance_norm"):
    """tf.contrib.layers.instance_norm(epsilon=1e-5, center=True, scale=True): beta and gamma in
    the scope, moments over H and W, then tf.nn.batch_normalization as contrib computes it."""
    with v1.variable_scope(scope):
        beta = v1.get_variable("beta", [x.shape[-1]], initializer=tf.zeros_initializer())
        gamma = v1.get_variable("gamma", [x.shape[-1]], initializer=tf.ones_initializer())
        mean, variance = v1.nn.moments(x, axes=[1, 2], keep_dims=True)
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-5)


def layer_instance_norm(x, scope="layer_instance_norm"):
    """ILN: rho starts at 0, own gamma (1) and beta (0), no smoothing."""
    with v1.variable_scope(scope):
        x_ins, x_ln = instance_and_layer_normalised(x)
        ch = x.shape[-1]
        rho = v1.get_variable(
            "rho", [ch], initializer=tf.constant_initializer(0.0), constraint=clip_rho
        )
        gamma = v1.get_variable("gamma", [ch], initializer=tf.constant_initializer(1.0))
        beta = v1.get_variable("beta", [ch], initializer=tf.constant_initializer(0.0))
        x_hat = rho * x_ins + (1 - rho) * x_ln
        return x_hat * gamma + beta


_U_READS = {}


def spectral_norm(w):
    """One power iteration from u ([1, out], not trainable); u <- the new u as a control
    dependency of the normalised kernel. Every call on one u shares one read of it per
    session.run (see SPECTRAL_NORM_U)."""
    w_shape = w.shape.as_list()
    w = tf.reshape(w, [-1, w_shape[-1]])
    u = v1.get_variable(
        "u", [1, w_shape[-1]], initializer=tf.random_normal_initializer(), trainable=False
    )
    u_hat = _U_READS.setdefault(u.ref(), u.value())

    v_hat = tf.nn.l2_normalize(tf.matmul(u_hat, tf.transpose(w)))
    u_hat = tf.nn.l2_normalize(tf.matmul(v_hat, w))
    u_hat = tf.stop_gradient(u_hat)
    v_hat = tf.stop_gradient(v_hat)

    sigma = tf.matmul(tf.matmul(v_hat, w), tf.transpose(u_hat))
    with tf.control_dependencies([u.assign(u_hat, read_value=False)]):
        return tf.reshape(w / sigma, w_shape)


##################################################################################
# Losses (ops.py)
##################################################################################


def l1_loss(x, y):
    return tf.reduce_mean(tf.abs(x - y))


def cam_loss(source, non_source):
    identity = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.ones_like(source), logits=source
    )
    non_identity = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.zeros_like(non_source), logits=non_source
    )
    return tf.reduce_mean(identity) + tf.reduce_mean(non_identity)


def regularization_loss(scope_name):
    """Sum of the collected L2 terms whose name contains scope_name ('generator' takes both
    generators', 'discriminator' both discriminators')."""
    losses = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
    return tf.reduce_sum([loss for loss in losses if scope_name in loss.name])


def discriminator_loss(real, fake):
    """lsgan, summed over the local and global outputs."""
    return sum(
        tf.reduce_mean(tf.math.squared_difference(real[i], 1.0))
        + tf.reduce_mean(tf.square(fake[i]))
        for i in range(2)
    )


def generator_loss(fake):
    """lsgan, summed over the local and global outputs."""
    return sum(tf.reduce_mean(tf.math.squared_difference(fake[i], 1.0)) for i in range(2))


##################################################################################
# The model (UGATIT.py)
##################################################################################


class UGATIT:
    def __init__(self, ch, light, n_res, n_dis, smoothing, batch_size):
        self.ch, self.light = ch, light
        self.n_res, self.n_dis, self.smoothing = n_res, n_dis, smoothing
        self.batch_size = batch_size
        self.sn, self.n_critic, self.dataset_name = True, 1, "selfie2anime"
        self.model_name = "UGATIT_light" if light else "UGATIT"

    @property
    def model_dir(self):
        return "{}_{}_{}_{}resblock_{}dis_{}_{}_{}_{}_{}{}{}".format(
            self.model_name, self.dataset_name, GAN_TYPE, self.n_res, self.n_dis, self.n_critic,
            ADV_WEIGHT, CYCLE_WEIGHT, IDENTITY_WEIGHT, CAM_WEIGHT,
            "_sn" if self.sn else "", "_smoothing" if self.smoothing else "",
        )

    def save(self, sess, saver, out, step):
        """The official save(): OUT/checkpoint/<model_dir>/<model_name>.model-<step>. Returns
        that prefix."""
        checkpoint_dir = os.path.join(out, "checkpoint", self.model_dir)
        os.makedirs(checkpoint_dir, exist_ok=True)
        prefix = os.path.join(checkpoint_dir, self.model_name + ".model")
        return saver.save(sess, prefix, global_step=step)

    def generator(self, x_init, reuse=False, scope="generator"):
        channel = self.ch
        with v1.variable_scope(scope, reuse=reuse):
            x = conv(x_init, channel, kernel=7, stride=1, pad=3, scope="conv")
            x = relu(instance_norm(x, scope="ins_norm"))

            for i in range(2):  # down-sampling
                x = conv(x, channel * 2, kernel=3, stride=2, pad=1, scope="conv_" + str(i))
                x = relu(instance_norm(x, scope="ins_norm_" + str(i)))
                channel = channel * 2

            for i in range(self.n_res):  # down-sampling bottleneck
                x = resblock(x, channel, scope="resblock_" + str(i))

            # Class activation map: one CAM_logit layer, used for GAP and for GMP.
            cam_gap_logit, cam_x_weight = fully_connected_with_w(
                global_avg_pooling(x), scope="CAM_logit"
            )
            x_gap = tf.multiply(x, cam_x_weight)
            cam_gmp_logit, cam_x_weight = fully_connected_with_w(
                global_max_pooling(x), reuse=True, scope="CAM_logit"
            )
            x_gmp = tf.multiply(x, cam_x_weight)

            cam_logit = tf.concat([cam_gap_logit, cam_gmp_logit], axis=-1)
            x = tf.concat([x_gap, x_gmp], axis=-1)
            x = relu(conv(x, channel, kernel=1, stride=1, scope="conv_1x1"))

            gamma, beta = self.mlp(x, reuse=reuse)

            for i in range(self.n_res):  # up-sampling bottleneck
                x = adaptive_ins_layer_resblock(
                    x, channel, gamma, beta, self.smoothing, scope="adaptive_resblock" + str(i)
                )

            for i in range(2):  # up-sampling
                x = up_sample(x, scale_factor=2)
                x = conv(x, channel // 2, kernel=3, stride=1, pad=1, scope="up_conv_" + str(i))
                x = relu(layer_instance_norm(x, scope="layer_ins_norm_" + str(i)))
                channel = channel // 2

            x = conv(x, channels=3, kernel=7, stride=1, pad=3, scope="G_logit")
            return tanh(x), cam_logit

    def mlp(self, x, reuse=False, scope="MLP"):
        """gamma and beta for AdaLIN, ch * n_res wide. The full model flattens the whole NHWC map,
        the light model its global average."""
        channel = self.ch * self.n_res
        if self.light:
            x = global_avg_pooling(x)
        with v1.variable_scope(scope, reuse=reuse):
            for i in range(2):
                x = relu(fully_connected(x, channel, scope="linear_" + str(i)))
            gamma = fully_connected(x, channel, scope="gamma")
            beta = fully_connected(x, channel, scope="beta")
            gamma = tf.reshape(gamma, shape=[self.batch_size, 1, 1, channel])
            beta = tf.reshape(beta, shape=[self.batch_size, 1, 1, channel])
            return gamma, beta

    def discriminator(self, x_init, reuse=False, scope="discriminator"):
        """[local, global] logits and [local, global] CAM logits."""
        with v1.variable_scope(scope, reuse=reuse):
            local_x, local_cam = self.discriminator_branch(x_init, self.n_dis - 3, scope="local")
            global_x, global_cam = self.discriminator_branch(x_init, self.n_dis - 1, scope="global")
            return [local_x, global_x], [local_cam, global_cam]

    def discriminator_branch(self, x_init, n_down, scope):
        """discriminator_global (n_down = n_dis - 1) and discriminator_local (n_dis - 3), which
        differ only in their number of stride-2 convs. Spectral norm everywhere but conv_1x1."""
        with v1.variable_scope(scope):
            channel = self.ch
            x = conv(x_init, channel, kernel=4, stride=2, pad=1, sn=self.sn, scope="conv_0")
            x = lrelu(x, 0.2)

            for i in range(1, n_down):
                x = conv(
                    x, channel * 2, kernel=4, stride=2, pad=1, sn=self.sn, scope="conv_" + str(i)
                )
                x = lrelu(x, 0.2)
                channel = channel * 2

            x = conv(x, channel * 2, kernel=4, stride=1, pad=1, sn=self.sn, scope="conv_last")
            x = lrelu(x, 0.2)
            channel = channel * 2

            cam_gap_logit, cam_x_weight = fully_connected_with_w(
                global_avg_pooling(x), sn=self.sn, scope="CAM_logit"
            )
            x_gap = tf.multiply(x, cam_x_weight)
            cam_gmp_logit, cam_x_weight = fully_connected_with_w(
                global_max_pooling(x), sn=self.sn, reuse=True, scope="CAM_logit"
            )
            x_gmp = tf.multiply(x, cam_x_weight)

            cam_logit = tf.concat([cam_gap_logit, cam_gmp_logit], axis=-1)
            x = tf.concat([x_gap, x_gmp], axis=-1)
            x = lrelu(conv(x, channel, kernel=1, stride=1, scope="conv_1x1"), 0.2)

            x = conv(x, channels=1, kernel=4, stride=1, pad=1, sn=self.sn, scope="D_logit")
            return x, cam_logit

    def generate_a2b(self, x_a, reuse=False):
        return self.generator(x_a, reuse=reuse, scope="generator_B")

    def generate_b2a(self, x_b, reuse=False):
        return self.generator(x_b, reuse=reuse, scope="generator_A")

    def build_train(self, domain_a, domain_b, optimizers):
        """build_model() for phase 'train', the inputs as given. Returns the tensors and ops a
        training iteration runs. With optimizers, G's Adam is made first, as officially (so its
        powers are beta1_power/beta2_power and D's beta1_power_1/beta2_power_1); each update
        waits for its loss, so the losses reported are those of the weights it updates."""
        x_ab, cam_ab = self.generate_a2b(domain_a)
        x_ba, cam_ba = self.generate_b2a(domain_b)
        x_aba, _ = self.generate_b2a(x_ab, reuse=True)
        x_bab, _ = self.generate_a2b(x_ba, reuse=True)
        x_aa, cam_aa = self.generate_b2a(domain_a, reuse=True)
        x_bb, cam_bb = self.generate_a2b(domain_b, reuse=True)

        real_a_logit, real_a_cam_logit = self.discriminator(domain_a, scope="discriminator_A")
        real_b_logit, real_b_cam_logit = self.discriminator(domain_b, scope="discriminator_B")
        fake_a_logit, fake_a_cam_logit = self.discriminator(
            x_ba, reuse=True, scope="discriminator_A"
        )
        fake_b_logit, fake_b_cam_logit = self.discriminator(
            x_ab, reuse=True, scope="discriminator_B"
        )

        t = {
            "G_A_gan": ADV_WEIGHT
            * (generator_loss(fake_a_logit) + generator_loss(fake_a_cam_logit)),
            "G_A_cycle": CYCLE_WEIGHT * l1_loss(x_bab, domain_b),
            "G_A_identity": IDENTITY_WEIGHT * l1_loss(x_aa, domain_a),
            "G_A_cam": CAM_WEIGHT * cam_loss(source=cam_ba, non_source=cam_aa),
            "G_B_gan": ADV_WEIGHT
            * (generator_loss(fake_b_logit) + generator_loss(fake_b_cam_logit)),
            "G_B_cycle": CYCLE_WEIGHT * l1_loss(x_aba, domain_a),
            "G_B_identity": IDENTITY_WEIGHT * l1_loss(x_bb, domain_b),
            "G_B_cam": CAM_WEIGHT * cam_loss(source=cam_ab, non_source=cam_bb),
            "D_A_loss": ADV_WEIGHT * (
                discriminator_loss(real_a_logit, fake_a_logit)
                + discriminator_loss(real_a_cam_logit, fake_a_cam_logit)
            ),
            "D_B_loss": ADV_WEIGHT * (
                discriminator_loss(real_b_logit, fake_b_logit)
                + discriminator_loss(real_b_cam_logit, fake_b_cam_logit)
            ),
        }
        for g in "AB":
            terms = ("gan", "cycle", "identity", "cam")
            t["G_%s_loss" % g] = sum(t["G_%s_%s" % (g, k)] for k in terms)
        t["G_regularization"] = regularization_loss("generator")
        t["D_regularization"] = regularization_loss("discriminator")
        t["Generator_loss"] = t["G_A_loss"] + t["G_B_loss"] + t["G_regularization"]
        t["Discriminator_loss"] = t["D_A_loss"] + t["D_B_loss"] + t["D_regularization"]

        d_fetches = {k: v for k, v in t.items() if k.startswith("D")}
        g_fetches = {k: v for k, v in t.items() if k.startswith("G")}
        # What the official G update fetches besides its losses (for its sample images).
        g_fetches.update(real_A=domain_a, real_B=domain_b, fake_A=x_ba, fake_B=x_ab)
        if optimizers:
            self.lr = v1.placeholder(tf.float32, name="learning_rate")
            t_vars = v1.trainable_variables()
            for name, loss, fetches in (
                ("generator", t["Generator_loss"], g_fetches),
                ("discriminator", t["Discriminator_loss"], d_fetches),
            ):
                optimizer = v1.train.AdamOptimizer(self.lr, beta1=0.5, beta2=0.999)
                with tf.control_dependencies([loss]):
                    fetches["optim"] = optimizer.minimize(
                        loss, var_list=[v for v in t_vars if name in v.name]
                    )
        return d_fetches, g_fetches

    def build_inference(self, a, b, discriminators=True):
        """The official test graph (generate_a2b on A, generate_b2a on B) plus, unless told
        not to, both discriminators on the real images."""
        a2b, a2b_cam = self.generate_a2b(a)
        b2a, b2a_cam = self.generate_b2a(b)
        if not discriminators:
            return {"a2b": a2b, "a2b_cam": a2b_cam, "b2a": b2a, "b2a_cam": b2a_cam}
        dis_a, dis_a_cam = self.discriminator(a, scope="discriminator_A")
        dis_b, dis_b_cam = self.discriminator(b, scope="discriminator_B")
        outputs = {"a2b": a2b, "a2b_cam": a2b_cam, "b2a": b2a, "b2a_cam": b2a_cam}
        for d, logits, cams in (("a", dis_a, dis_a_cam), ("b", dis_b, dis_b_cam)):
            for i, branch in enumerate(("local", "global")):
                outputs["dis_%s_%s" % (d, branch)] = logits[i]
                outputs["dis_%s_%s_cam" % (d, branch)] = cams[i]
        return outputs


##################################################################################
# Running it
##################################################################################


# Steps Adam is said to have taken in a randomised checkpoint.
ADAM_STEPS = 7


def random_value(rng, name, shape):
    """A random value for a variable, by the last part of its name. Chosen so that no mapping
    mistake can hide behind an initial value: every bias, gamma, beta and rho differs from its
    initialiser, rho spans [0, 1] with 0, 1 and 0.05 (below smoothing's 0.1) always present, and
    Adam's state is plausible (v > 0, |m| / sqrt(v) mostly below 1)."""
    last = name.split("/")[-1]
    if last == "kernel":
        return rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
    if last in ("bias", "beta"):
        return rng.normal(0.0, 0.1, shape)
    if last == "gamma":
        return rng.uniform(0.5, 1.5, shape)
    if last == "rho":
        rho = rng.uniform(0.0, 1.0, shape)
        rho[:3] = [0.0, 1.0, 0.05]
        return rho
    if last == "u":
        return rng.standard_normal(shape)
    if last == "Adam":
        return rng.normal(0.0, 1e-3, shape)
    if last == "Adam_1":
        return rng.uniform(1e-6, 1e-4, shape)
    # The powers of one optimizer after ADAM_STEPS steps: they are beta^t for one t in any
    # checkpoint TensorFlow writes, which is what the importer's step count relies on.
    if last.startswith("beta1_power"):
        return np.full(shape, 0.5**ADAM_STEPS)
    if last.startswith("beta2_power"):
        return np.full(shape, 0.999**ADAM_STEPS)
    raise ValueError("no random value for variable " + name)


def randomise(sess, rng):
    """Sets every global variable to random_value(), in name order, by running its initializer
    with its initial value fed."""
    variables = sorted(v1.global_variables(), key=lambda v: v.op.name)
    feed = {v.initial_value: random_value(rng, v.op.name, v.shape.as_list()) for v in variables}
    sess.run([v.initializer for v in variables], feed)


def session():
    config = v1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
    return v1.Session(config=config)


def u_values(sess):
    u_vars = [v for v in v1.global_variables() if v.op.name.endswith("/u")]
    return {v.op.name: value.reshape(-1).tolist() for v, value in zip(u_vars, sess.run(u_vars))}


def assigns_per_u(fetches):
    """How many times one sess.run of fetches assigns each u: the AssignVariableOps on u's
    handle that the fetches need, through data and control inputs."""
    handles = {v.handle.op: v.op.name for v in v1.global_variables() if v.op.name.endswith("/u")}
    seen = set()
    todo = [f if isinstance(f, tf.Operation) else f.op for f in tf.nest.flatten(fetches)]
    counts = dict.fromkeys(handles.values(), 0)
    while todo:
        op = todo.pop()
        if op in seen:
            continue
        seen.add(op)
        if op.type == "AssignVariableOp" and op.inputs[0].op in handles:
            counts[handles[op.inputs[0].op]] += 1
        todo.extend(t.op for t in op.inputs)
        todo.extend(op.control_inputs)
    return counts


def write_f32(out, name, array):
    np.asarray(array, dtype="<f4").tofile(os.path.join(out, name + ".f32"))
    return {"file": name + ".f32", "shape": list(np.shape(array))}


def images(rng, batch, size):
    return rng.uniform(-1.0, 1.0, (batch, size, size, 3)).astype(np.float32)


def check_sizes(args):
    if args.n_res != 4:
        raise SystemExit(
            "--n-res must be 4: the official MLP is ch * n_res wide, the bottleneck ch * 4"
        )
    if args.img % 4 or args.img >> (args.n_dis - 1) < 3:
        fits = max(n for n in range(3, 12) if args.img >> (n - 1) >= 3)
        raise SystemExit(
            "--img must be divisible by 4 and img / 2^(n_dis-1) >= 3 (the discriminator's "
            "reflect padding of 2): img %d takes --n-dis %d at most" % (args.img, fits)
        )


def forward(args, model):
    rng = np.random.default_rng(args.seed)
    with tf.Graph().as_default():
        v1.set_random_seed(args.seed)
        shape = [args.batch, args.img, args.img, 3]
        domains = v1.placeholder(tf.float32, shape), v1.placeholder(tf.float32, shape)
        model.build_train(*domains, optimizers=args.adam)
        # A checkpoint that is not quite U-GAT-IT, for the importer's errors: a variable the
        # official graph lacks, and official ones left out.
        for name in args.extra_variable:
            v1.get_variable(name, [1], initializer=v1.zeros_initializer())
        kept = [v for v in v1.global_variables() if v.op.name not in args.drop_variable]
        if args.generators_only:
            kept = [v for v in kept if v.op.name.startswith("generator_")]
        with session() as sess:
            randomise(sess, rng)
            saved = model.save(sess, v1.train.Saver(var_list=kept), args.out, args.step)
    if args.extra_variable or args.drop_variable:
        # The official test graph cannot restore such a checkpoint: nothing to run.
        with open(os.path.join(args.out, "parity.json"), "w") as f:
            json.dump({"checkpoint_prefix": os.path.relpath(saved, args.out), "arrays": {}}, f)
        return

    a, b = images(rng, args.batch, args.img), images(rng, args.batch, args.img)
    with tf.Graph().as_default():
        a_in, b_in = v1.placeholder(tf.float32, a.shape), v1.placeholder(tf.float32, b.shape)
        outputs = model.build_inference(a_in, b_in, discriminators=not args.generators_only)
        with session() as sess:
            sess.run(v1.global_variables_initializer())  # as the official test() does
            v1.train.Saver().restore(sess, saved)
            values = sess.run(outputs, {a_in: a, b_in: b})
            u_after = u_values(sess)

    arrays = {"a": write_f32(args.out, "a", a), "b": write_f32(args.out, "b", b)}
    for name, value in sorted(values.items()):
        arrays[name] = write_f32(args.out, name, value)
    report = {
        "options": options(args, model),
        "checkpoint_prefix": os.path.relpath(saved, args.out),
        "arrays": arrays,
        "variables": [{"name": n, "shape": s} for n, s in v1.train.list_variables(saved)],
        "discriminator_u": (
            "The dis_* outputs come from one sess.run that started from the SAVED u (the "
            "checkpoint was written before it): each spectral-normed layer did one power "
            "iteration from the checkpoint's u, u_hat = l2n(l2n(u W^T) W), v_hat = l2n(u W^T), "
            "sigma = v_hat W u_hat^T, kernel / sigma. That run then assigned u_hat to u; "
            "u_after_run gives it. " + SPECTRAL_NORM_U
        ),
        "u_after_run": u_after,
    }
    with open(os.path.join(args.out, "parity.json"), "w") as f:
        json.dump(report, f, indent=1)


def step(args, model):
    rng = np.random.default_rng(args.seed)
    a, b = images(rng, args.batch, args.img), images(rng, args.batch, args.img)
    with tf.Graph().as_default():
        v1.set_random_seed(args.seed)
        a_in, b_in = v1.placeholder(tf.float32, a.shape), v1.placeholder(tf.float32, b.shape)
        d_fetches, g_fetches = model.build_train(a_in, b_in, optimizers=True)
        feed = {a_in: a, b_in: b, model.lr: args.lr}
        saver = v1.train.Saver()
        with session() as sess:
            randomise(sess, rng)
            before = model.save(sess, saver, args.out, 1)
            u_before = u_values(sess)
            d = sess.run(d_fetches, feed)  # Update D
            u_after_d = u_values(sess)
            g = sess.run(g_fetches, feed)  # Update G
            after = model.save(sess, saver, args.out, 2)
            u_after_g = u_values(sess)
        d_assigns, g_assigns = assigns_per_u(d_fetches), assigns_per_u(g_fetches)

    report = {
        "options": options(args, model),
        "lr": args.lr,
        "inputs": {"a": write_f32(args.out, "a", a), "b": write_f32(args.out, "b", b)},
        "checkpoint_before": os.path.relpath(before, args.out),
        "checkpoint_after": os.path.relpath(after, args.out),
        "order": "one sess.run of D's Adam update (fetching its losses), then one of G's; both "
        "fed a and b",
        "d_step": {k: float(v) for k, v in d.items() if k != "optim"},
        "g_step": {k: float(v) for k, v in g.items() if np.ndim(v) == 0 and k != "optim"},
        "spectral_norm_u": SPECTRAL_NORM_U + (
            " In one iteration: the D update calls each discriminator on real and on fake images, "
            "the G update only on fakes, so a conv u is assigned 2 times and then 1 time, a "
            "CAM_logit u 4 times and then 2 times (d_step_assigns, g_step_assigns); u ends two "
            "power iterations on: one with the kernels before D's update, one with them after."
        ),
        "d_step_assigns": d_assigns,
        "g_step_assigns": g_assigns,
        "u_before": u_before,
        "u_after_d_step": u_after_d,
        "u_after_g_step": u_after_g,
    }
    with open(os.path.join(args.out, "step.json"), "w") as f:
        json.dump(report, f, indent=1)


def options(args, model):
    return {
        "ch": args.ch,
        "img_size": args.img,
        "light": args.light,
        "n_res": args.n_res,
        "n_dis": args.n_dis,
        "smoothing": model.smoothing,
        "sn": model.sn,
        "batch": args.batch,
        "seed": args.seed,
        "gan_type": GAN_TYPE,
        "n_critic": model.n_critic,
        "weights": {
            "adv": ADV_WEIGHT,
            "cycle": CYCLE_WEIGHT,
            "identity": IDENTITY_WEIGHT,
            "cam": CAM_WEIGHT,
        },
        "adam": getattr(args, "adam", True),
        "model_name": model.model_name,
        "model_dir": model.model_dir,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, batch in (("forward", 2), ("step", 1)):
        p = commands.add_parser(name)
        p.add_argument("--out", required=True)
        p.add_argument("--ch", type=int, default=8)
        p.add_argument("--img", type=int, default=128)
        p.add_argument("--light", action="store_true")
        p.add_argument("--n-res", type=int, default=4)
        p.add_argument("--n-dis", type=int, default=6)
        p.add_argument("--no-smoothing", action="store_true")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--batch", type=int, default=batch)
        if name == "forward":
            p.add_argument("--adam", action="store_true")
            p.add_argument("--extra-variable", action="append", default=[])
            p.add_argument("--drop-variable", action="append", default=[])
            p.add_argument("--generators-only", action="store_true")
            p.add_argument("--step", type=int, default=1000)
        else:
            p.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()
    check_sizes(args)
    os.makedirs(args.out, exist_ok=True)
    model = UGATIT(args.ch, args.light, args.n_res, args.n_dis, not args.no_smoothing, args.batch)
    started = time.time()
    (forward if args.command == "forward" else step)(args, model)
    print("%s: %.1f s, written to %s" % (args.command, time.time() - started, args.out))


if __name__ == "__main__":
    main()
