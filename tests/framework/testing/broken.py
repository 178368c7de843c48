"""Correct reference plugins, and broken variants that each break one contract.

Every broken class below derives from a reference class and changes as little as
possible, so that the one check meant to catch the bug is the only one to fail
(see test_checks.py for the expected sets). The bugs are the ones plugin authors
make: each is written the way it would appear in a real plugin.
"""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict, Field

from lamina import (
    Block,
    Example,
    FreeText,
    Layer,
    LayerConfig,
    LayerTraits,
    Loss,
    LossExample,
    LossReference,
    LossTraits,
    Optimizer,
    OptimizerConfig,
    OptimizerExample,
    OptimizerReference,
    ParamSpec,
    Reference,
    ShapeError,
    StateError,
)

# -- reference layers: each must pass every check -----------------------------------------


class DenseConfig(LayerConfig):
    units: int = Field(3, ge=1, le=64, description="output features")


def _normal(shape, rng, dtype):
    return rng.normal(0, 0.5, shape).astype(dtype)


class RefDense(Layer):
    """y = x W + b; x (N, D), W (D, U), b (U,)."""

    name = "ref_dense"
    Config = DenseConfig

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ShapeError(f"ref_dense expects (D,), received {input_shape}")
        return (self.config.units,)

    def param_specs(self, input_shape):
        return {"W": ParamSpec((input_shape[0], self.config.units), init=_normal),
                "b": ParamSpec((self.config.units,), init=_normal)}

    def forward(self, x, *, training):
        self.cache = x
        return x @ self._params["W"] + self._params["b"]

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        np.matmul(x.T, dy, out=self._grads["W"])
        np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W"].T

    @classmethod
    def examples(cls):
        return [Example(config={"units": 3}, input_shape=(4,), id="units_3"),
                Example(config={"units": 1}, input_shape=(2,))]


class RefDenseByHand(RefDense):
    """The reference dense on one example with values worked out by hand."""

    name = "ref_dense_by_hand"

    @classmethod
    def examples(cls):
        # y = x W + b with W the identity over a row of ones: y = [1 - 1, 0 - 1 + 1,
        # 2 - 1 + 2]; dx = dy W^T = [1, 2, 3, 1 + 2 + 3]; dW = x^T dy; db = dy
        hand = Reference(
            x=[[1.0, 0.0, 2.0, -1.0]], y=[[0.0, 0.0, 3.0]],
            params={"W": [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], "b": [0, 1, 2]},
            dy=[[1.0, 2.0, 3.0]], dx=[[1.0, 2.0, 3.0, 6.0]],
            grads={"W": [[1, 2, 3], [0, 0, 0], [2, 4, 6], [-1, -2, -3]], "b": [1, 2, 3]})
        return [Example(config={"units": 3}, input_shape=(4,), id="hand", reference=hand)]


class LeakyConfig(LayerConfig):
    slope: float = Field(0.1, ge=0.0, le=1.0, description="slope for x < 0")


class RefLeakyRelu(Layer):
    """y = x if x > 0 else slope * x; a kink at 0, any input shape."""

    name = "ref_leaky_relu"
    Config = LeakyConfig

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        slope = np.where(x > 0, x.dtype.type(1), x.dtype.type(self.config.slope))
        self.cache = slope
        return x * slope

    def backward(self, dy, *, input_grad=True):
        return dy * self.cached()

    @classmethod
    def examples(cls):
        # 4 * 6 * 6 = 144 elements per sample: more than the finite-difference cap.
        return [Example(config={"slope": 0.1}, input_shape=(4, 6, 6), id="image"),
                Example(config={"slope": 0.0}, input_shape=(5,), id="relu")]


class EmptyConfig(LayerConfig):
    pass


class RefSwish(Layer):
    """y = x * sigmoid(x): smooth, and not monotone (its minimum is near x = -1.28)."""

    name = "ref_swish"
    Config = EmptyConfig

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        s = 1 / (1 + np.exp(-x))
        self.cache = (x, s)
        return x * s

    def backward(self, dy, *, input_grad=True):
        x, s = self.cached()
        return dy * s * (1 + x * (1 - s))

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(6,), id="flat")]


class RefAvgPool(Layer):
    """The mean of each pair of entries along the last axis: (C, L) -> (C, L // 2)."""

    name = "ref_avg_pool"
    Config = EmptyConfig

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[1] < 2:
            raise ShapeError(f"ref_avg_pool expects (C, L >= 2), received {input_shape}")
        return (input_shape[0], input_shape[1] // 2)

    def forward(self, x, *, training):
        n, c, length = x.shape
        pairs = x[:, :, : length // 2 * 2].reshape(n, c, -1, 2)
        self.cache = x.shape
        return pairs.mean(axis=3)

    def backward(self, dy, *, input_grad=True):
        n, c, length = self.cached()
        dx = np.zeros((n, c, length), dtype=dy.dtype)
        dx[:, :, : length // 2 * 2] = np.repeat(dy / 2, 2, axis=2)
        return dx

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(2, 6), id="pairs")]


class DropoutConfig(LayerConfig):
    rate: float = Field(0.5, ge=0.0, lt=1.0, description="drop probability")


class RefDropout(Layer):
    """Inverted dropout with its mask from the generator given to build()."""

    name = "ref_dropout"
    Config = DropoutConfig
    traits = LayerTraits(stochastic=True)

    def compute_output_shape(self, input_shape):
        return input_shape

    def mask(self, x, training):
        if not training:
            return np.ones_like(x)
        keep = self.rng.random(x.shape) >= self.config.rate
        return keep.astype(x.dtype) / x.dtype.type(1 - self.config.rate)

    def forward(self, x, *, training):
        self.cache = self.mask(x, training)
        return x * self.cache

    def backward(self, dy, *, input_grad=True):
        return dy * self.cached()

    @classmethod
    def examples(cls):
        return [Example(config={"rate": 0.5}, input_shape=(6,), id="half"),
                Example(config={"rate": 0.0}, input_shape=(3,), id="off",
                        extra={"stochastic": False})]


class RefAdd(Layer):
    """y = x_1 + ... + x_K; every input gets dy."""

    name = "ref_add"
    Config = EmptyConfig
    traits = LayerTraits(multi_input=True)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def forward(self, x, *, training):
        self.cache = len(x)
        return sum(x[1:], x[0].copy())

    def backward(self, dy, *, input_grad=True):
        return [dy.copy() for _ in range(self.cached())]

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=((2, 3), (2, 3), (2, 3)), id="three")]


class CenterConfig(LayerConfig):
    momentum: float = Field(0.5, ge=0.0, le=1.0, description="running-mean momentum")


class RefBatchCenter(Layer):
    """Training: y = x - mean_n x (running mean kept); eval: y = x - running_mean."""

    name = "ref_batch_center"
    Config = CenterConfig
    traits = LayerTraits(batch_dependent=True)

    def compute_output_shape(self, input_shape):
        return input_shape

    def param_specs(self, input_shape):
        return {"running_mean": ParamSpec(input_shape, trainable=False)}

    def eval_offset(self):
        return self._state["running_mean"]

    def forward(self, x, *, training):
        self.cache = training
        if not training:
            return x - self.eval_offset()
        mu = x.mean(axis=0)
        m = self.config.momentum
        self._state["running_mean"][...] = m * self._state["running_mean"] + (1 - m) * mu
        return x - mu

    def backward(self, dy, *, input_grad=True):
        training = self.cached()
        return dy - dy.mean(axis=0) if training else dy.copy()

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(4,), id="flat")]


class RefChannelScale(Layer):
    """y = x * gamma + beta per channel (axis 1), on (N, C) or (N, C, H, W) inputs."""

    name = "ref_channel_scale"
    Config = EmptyConfig

    def compute_output_shape(self, input_shape):
        if len(input_shape) not in (1, 3):
            raise ShapeError(f"ref_channel_scale expects (C,) or (C, H, W), received "
                             f"{input_shape}")
        return input_shape

    def param_specs(self, input_shape):
        return {"gamma": ParamSpec((input_shape[0],), init=_normal),
                "beta": ParamSpec((input_shape[0],), init=_normal)}

    @staticmethod
    def per_channel(x):
        return (1, -1) if x.ndim == 2 else (1, -1, 1, 1)

    @staticmethod
    def summed_axes(x):
        return (0,) if x.ndim == 2 else (0, 2, 3)

    def forward(self, x, *, training):
        self.cache = x
        shape = self.per_channel(x)
        return x * self._params["gamma"].reshape(shape) + self._params["beta"].reshape(shape)

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        axes = self.summed_axes(x)
        np.sum(dy * x, axis=axes, out=self._grads["gamma"])
        np.sum(dy, axis=axes, out=self._grads["beta"])
        return dy * self._params["gamma"].reshape(self.per_channel(x))

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(3,), id="features")]  # (C, H, W) untried


class RefSoftmaxCrossEntropy(Loss):
    """Mean cross-entropy of softmax(z); gradient (p - y) / N."""

    name = "ref_softmax_ce"
    Config = EmptyConfig

    def log_proba(self, z):
        s = z - z.max(axis=1, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))

    def compute(self, z, y):
        log_p = self.log_proba(z)
        self.cache = (np.exp(log_p), y)
        return float(-np.sum(y * log_p) / z.shape[0])

    def backward(self):
        p, y = self.cached()
        return (p - y) / p.dtype.type(p.shape[0])

    def predict_proba(self, logits):
        return np.exp(self.log_proba(logits))

    @classmethod
    def examples(cls):
        return [LossExample(config={}, n_classes=4, id="four")]


class RefSoftmaxCrossEntropyByHand(RefSoftmaxCrossEntropy):
    """The reference loss on one example with values worked out by hand."""

    name = "ref_softmax_ce_by_hand"

    @classmethod
    def examples(cls):
        # logits [2, 1, 0.1], class 2: p = e^z / 11.2125 = [0.659001, 0.242433, 0.098566],
        # L = -log 0.098566 = 2.317030, dL/dz = p - y
        hand = LossReference(z=[[2.0, 1.0, 0.1]], targets=[2], value=2.3170300163,
                             dz=[[0.6590011389, 0.2424329707, -0.9014341096]],
                             proba=[[0.6590011389, 0.2424329707, 0.0985658904]], tolerance=1e-9)
        return [LossExample(config={}, n_classes=3, id="hand", reference=hand)]


class RefSparseCrossEntropy(RefSoftmaxCrossEntropy):
    """Cross-entropy that takes class indices only: one-hot and soft rows are refused."""

    name = "ref_sparse_ce"
    traits = LossTraits(targets=("indices",))


class RefSquaredError(Loss):
    """A value loss: mean over the N·C entries of (z - y)^2; gradient 2 (z - y) / (N C)."""

    name = "ref_squared_error"
    Config = EmptyConfig
    traits = LossTraits(targets=("values",))

    def compute(self, z, y):
        d = z - y
        self.cache = d
        return float(np.sum(d * d) / d.size)

    def backward(self):
        d = self.cached()
        return 2 * d / d.dtype.type(d.size)

    def predict_proba(self, logits):
        return np.array(logits, copy=True)

    @classmethod
    def examples(cls):
        return [LossExample(config={}, n_classes=3, id="three"),
                LossExample(config={}, n_classes=1, id="one")]


class RefSigmoidCrossEntropy(Loss):
    """A multilabel value loss: binary cross-entropy of sigmoid(z), stable in log space."""

    name = "ref_sigmoid_ce"
    Config = EmptyConfig
    traits = LossTraits(targets=("multilabel",))

    def sigmoid(self, z):
        return np.exp(np.minimum(z, 0)) / (1 + np.exp(-np.abs(z)))

    def compute(self, z, y):
        self.cache = (self.sigmoid(z), y)
        loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return float(np.sum(loss) / loss.size)

    def backward(self):
        p, y = self.cached()
        return (p - y) / p.dtype.type(p.size)

    def predict_proba(self, logits):
        return self.sigmoid(np.asarray(logits))

    @classmethod
    def examples(cls):
        return [LossExample(config={}, n_classes=4, id="four")]


class SGDConfig(OptimizerConfig):
    lr: float = Field(0.05, gt=0, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum factor")


class RefMomentumSGD(Optimizer):
    """b = momentum * b + g; p -= lr * b."""

    name = "ref_momentum_sgd"
    Config = SGDConfig

    def state_slots(self):
        return ("velocity",) if self.config.momentum else ()

    def update(self, params, grads):
        for key, p in params.items():
            if not self.config.momentum:
                p -= self.lr * grads[key]
                continue
            b = self.slot("velocity", key, p)
            b *= self.config.momentum
            b += grads[key]
            p -= self.lr * b

    @classmethod
    def examples(cls):
        return [OptimizerExample(config={}, id="momentum"),
                OptimizerExample(config={"momentum": 0.0, "lr": 0.1}, id="plain")]


class RefMomentumSGDByHand(RefMomentumSGD):
    """The reference optimizer on one example with values worked out by hand."""

    name = "ref_momentum_sgd_by_hand"

    @classmethod
    def examples(cls):
        # lr 0.05, momentum 0.9, g = 1 twice: b = 1, p = 1 - 0.05 = 0.95; b = 0.9 + 1 = 1.9,
        # p = 0.95 - 0.05 * 1.9 = 0.855
        hand = OptimizerReference(params={"dense_1.b": [1.0]},
                                  grads=[{"dense_1.b": [1.0]}, {"dense_1.b": [1.0]}],
                                  expected={"dense_1.b": [0.855]})
        return [OptimizerExample(config={}, id="hand", reference=hand)]


class RefDenseReluBlockConfig(LayerConfig):
    units: int = Field(4, ge=1, le=64, description="the dense layer's units")
    rate: float = Field(0.0, ge=0.0, lt=1.0, description="a dropout after the relu (0: none)")


class RefDenseReluBlock(Block):
    """dense -> relu, and a dropout when rate > 0: a block whose examples are stochastic
    or not by their settings."""

    name = "ref_dense_relu_block"
    Config = RefDenseReluBlockConfig

    @classmethod
    def layers(cls, config):
        tables = [{"type": "dense", "units": config.units}, {"type": "relu"}]
        if config.rate > 0:
            tables.append({"type": "dropout", "rate": config.rate})
        return tables

    @classmethod
    def examples(cls):
        return [Example({"units": 3}, (5,), id="plain"),
                Example({"units": 6, "rate": 0.5}, (4,), id="dropout")]


class RefScalePooled(RefChannelScale):
    """ref_channel_scale that ends in a following 2x2 max pool (stride 2) itself."""

    name = "ref_scale_pooled"
    traits = LayerTraits(fuses_max_pool=True)

    def fusable_max_pool(self, window):
        return tuple(window) == ((2, 2), (2, 2))

    @staticmethod
    def windows(y):
        """(N, C, H // 2, W // 2, 4): each 2x2 window's entries in row-major order."""
        n, c, h, w = y.shape
        y = y[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
        return y.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)

    @staticmethod
    def pick(blocks):
        """The first NaN of each window, else its first maximum."""
        nan = np.isnan(blocks)
        return np.where(nan.any(axis=-1), np.argmax(nan, axis=-1),
                        np.argmax(np.where(nan, -np.inf, blocks), axis=-1))

    def forward_max_pool(self, x, window, *, training):
        y = self.forward(x, training=training)
        blocks = self.windows(y)
        winner = self.pick(blocks)
        self.cache = (x, winner, y.shape)
        return np.take_along_axis(blocks, winner[..., None], axis=-1)[..., 0]

    def backward_max_pool(self, dy, *, input_grad=True):
        x, winner, (n, c, h, w) = self.cached()
        routed = np.zeros((*winner.shape, 4))
        np.put_along_axis(routed, winner[..., None], dy[..., None], axis=-1)
        d = np.zeros((n, c, h, w))
        d[:, :, : h // 2 * 2, : w // 2 * 2] = routed.reshape(
            n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
            n, c, h // 2 * 2, w // 2 * 2)
        pooled, self.cache = self.cache, x  # backward reads the input
        try:
            return self.backward(d.astype(dy.dtype), input_grad=input_grad)
        finally:
            self.cache = pooled

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(2, 4, 5), id="image")]


REFERENCE = [RefDense, RefLeakyRelu, RefSwish, RefAvgPool, RefDropout, RefAdd, RefBatchCenter,
             RefChannelScale, RefSoftmaxCrossEntropy, RefSparseCrossEntropy, RefMomentumSGD,
             RefDenseByHand, RefSoftmaxCrossEntropyByHand, RefMomentumSGDByHand,
             RefDenseReluBlock, RefSquaredError, RefSigmoidCrossEntropy, RefScalePooled]

# -- broken layers: one contract broken each ----------------------------------------------


class WrongGradientSign(RefDense):
    name = "wrong_gradient_sign"

    def backward(self, dy, *, input_grad=True):
        return -super().backward(dy)


class MissingGradKey(RefDense):
    name = "missing_grad_key"

    def build(self, input_shape, rng, *, dtype=np.float32):
        out = super().build(input_shape, rng, dtype=dtype)
        del self._grads["b"]
        return out

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        np.matmul(x.T, dy, out=self._grads["W"])
        return dy @ self._params["W"].T


class DottedParamKey(RefDense):
    """Names its weight 'W.T': the network's dotted names become ambiguous."""

    name = "dotted_param_key"

    def param_specs(self, input_shape):
        return {"W.T": ParamSpec((input_shape[0], self.config.units), init=_normal),
                "b": ParamSpec((self.config.units,), init=_normal)}

    def forward(self, x, *, training):
        self.cache = x
        return x @ self._params["W.T"] + self._params["b"]

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        np.matmul(x.T, dy, out=self._grads["W.T"])
        np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W.T"].T


class InputMutated(RefLeakyRelu):
    name = "input_mutated"

    def forward(self, x, *, training):
        self.cache = np.where(x > 0, x.dtype.type(1), x.dtype.type(self.config.slope))
        x *= self.cache
        return x


class OutputShapeLies(RefDense):
    name = "output_shape_lies"

    def compute_output_shape(self, input_shape):
        return (super().compute_output_shape(input_shape)[0] + 1,)


class LaxConfig(DenseConfig):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ConfigAcceptsExtraKeys(RefDense):
    name = "config_accepts_extra_keys"
    Config = LaxConfig


class UnboundedConfig(LayerConfig):
    slope: float = Field(0.1, description="slope for x < 0 (should be in [0, 1])")


class ConfigWithoutBounds(RefLeakyRelu):
    name = "config_without_bounds"
    Config = UnboundedConfig


class DocumentedOnlyConfig(LayerConfig):
    slope: float = Field(0.1, json_schema_extra={"minimum": 0.0, "maximum": 1.0},
                         description="slope for x < 0; the bound is documented, not enforced")


class ConfigBoundNotEnforced(RefLeakyRelu):
    name = "config_bound_not_enforced"
    Config = DocumentedOnlyConfig


class FreeStringConfig(LeakyConfig):
    mode: str = Field("leaky", description='"leaky" or "relu"')


class StringSettingFallsBack(RefLeakyRelu):
    """A plain str setting: "releu" is accepted and silently gives the leaky slope."""

    name = "string_setting_falls_back"
    Config = FreeStringConfig

    def forward(self, x, *, training):
        slope = 0.0 if self.config.mode == "relu" else self.config.slope
        self.cache = np.where(x > 0, x.dtype.type(1), x.dtype.type(slope))
        return x * self.cache


class UndeclaredBatchCoupling(RefBatchCenter):
    name = "undeclared_batch_coupling"
    traits = LayerTraits(batch_dependent=False)


class DropoutIgnoresTraining(RefDropout):
    name = "dropout_ignores_training"

    def mask(self, x, training):
        return super().mask(x, False)


class DropoutInEval(RefDropout):
    name = "dropout_in_eval"

    def mask(self, x, training):
        return super().mask(x, True)


class DropoutOwnGenerator(RefDropout):
    """Derives a generator of its own at build: the sharded step's reseeding misses it."""

    name = "dropout_own_generator"

    def build(self, input_shape, rng, *, dtype=np.float32):
        out = super().build(input_shape, rng, dtype=dtype)
        self.own = np.random.default_rng(int(rng.integers(2**32)))
        return out

    def mask(self, x, training):
        if not training:
            return np.ones_like(x)
        keep = self.own.random(x.shape) >= self.config.rate
        return keep.astype(x.dtype) / x.dtype.type(1 - self.config.rate)


class UndeclaredNoise(RefLeakyRelu):
    """Adds training noise from its generator without declaring itself stochastic."""

    name = "undeclared_noise"

    def forward(self, x, *, training):
        y = super().forward(x, training=training)
        if training:
            y = y + x.dtype.type(1e-3) * self.rng.standard_normal(x.shape[1:]).astype(x.dtype)
        return y


class EvalUpdatesState(RefBatchCenter):
    name = "eval_updates_state"

    def forward(self, x, *, training):
        y = super().forward(x, training=training)
        if not training:
            self._state["running_mean"] += x.mean(axis=0)
        return y


class EvalCentresWithTheBatch(RefBatchCenter):
    """Eval mode centres with the batch's own mean and moves the running mean, as training
    does: deterministic on one input, yet every prediction moves the model."""

    name = "eval_centres_with_the_batch"

    def forward(self, x, *, training):
        return super().forward(x, training=True)


class BatchSizeCapturedOnce(RefBatchCenter):
    """Keeps the batch size of its first forward for every later backward's mean."""

    name = "batch_size_captured_once"

    def forward(self, x, *, training):
        if not hasattr(self, "_n"):
            self._n = len(x)
        return super().forward(x, training=training)

    def backward(self, dy, *, input_grad=True):
        training = self.cached()
        return dy - dy.sum(axis=0) / self._n if training else dy.copy()


class FirstBatchInitialises(RefBatchCenter):
    """Starts the running mean at the first training batch's mean, remembering that it did
    with a flag outside state(): a loaded copy starts it again."""

    name = "first_batch_initialises"

    def forward(self, x, *, training):
        if training and not getattr(self, "_started", False):
            self._started = True
            self._state["running_mean"][...] = x.mean(axis=0)
            self.cache = True
            return x - x.mean(axis=0)
        return super().forward(x, training=training)


class ChannelScaleImageBranchBug(RefChannelScale):
    """Averages dgamma over the image axes instead of summing, in the (C, H, W) branch its
    examples never take."""

    name = "channel_scale_image_branch_bug"

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        if x.ndim == 2:
            return super().backward(dy, input_grad=input_grad)
        np.sum((dy * x).mean(axis=(2, 3)), axis=0, out=self._grads["gamma"])
        np.sum(dy, axis=(0, 2, 3), out=self._grads["beta"])
        return dy * self._params["gamma"].reshape(1, -1, 1, 1)


class WritesThroughRavel(RefLeakyRelu):
    """Fills its output through ravel(), which copies an array that is not C-contiguous:
    right for C-ordered x, unwritten garbage for a Fortran-ordered or transposed one."""

    name = "writes_through_ravel"

    def forward(self, x, *, training):
        self.cache = np.where(x > 0, 1, self.config.slope).astype(x.dtype)
        y = np.empty_like(x)
        y.ravel()[:] = (x * self.cache).ravel()
        return y


class NaiveSoftplus(Layer):
    """y = log(1 + exp(x)) as the formula reads: exp overflows in float32 past x = 88, where
    float64 is still finite."""

    name = "naive_softplus"
    Config = EmptyConfig

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        self.cache = x
        return np.log1p(np.exp(x))

    def backward(self, dy, *, input_grad=True):
        return dy / (1 + np.exp(-self.cached()))

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(5,), id="flat")]


_SCRATCH: dict = {}


class ModuleScratchBuffer(RefLeakyRelu):
    """Computes into a buffer kept in the module, shared by every instance: exact on its
    own, wrong when two replicas run at once in the sharded step's threads."""

    name = "module_scratch_buffer"

    def forward(self, x, *, training):
        buffer = _SCRATCH.get((x.shape, x.dtype))
        if buffer is None:
            buffer = _SCRATCH[(x.shape, x.dtype)] = np.empty_like(x)
        self.cache = np.where(x > 0, 1, self.config.slope).astype(x.dtype)
        np.multiply(x, self.cache, out=buffer)
        return buffer.copy()


class DenseSubtractsBias(RefDenseByHand):
    """y = x W - b, with the matching db = -sum dy: self-consistent, and not the documented
    y = x W + b."""

    name = "dense_subtracts_bias"

    def forward(self, x, *, training):
        self.cache = x
        return x @ self._params["W"] - self._params["b"]

    def backward(self, dy, *, input_grad=True):
        dx = super().backward(dy, input_grad=input_grad)
        self._grads["b"] *= -1
        return dx


class ScaleStartsAtOnes(RefChannelScale):
    """A per-channel scale whose gamma starts at ones and whose dx forgets it (dx = dy):
    right while gamma is 1, wrong once training has moved it."""

    name = "scale_starts_at_ones"

    def param_specs(self, input_shape):
        return {"gamma": ParamSpec((input_shape[0],), init="ones"),
                "beta": ParamSpec((input_shape[0],), init="zeros")}

    def backward(self, dy, *, input_grad=True):
        super().backward(dy, input_grad=input_grad)
        return dy.copy()


class BatchSizeKeptConsistently(RefBatchCenter):
    """Centres with sum(x) / n, n the batch size of its first forward, in forward and
    backward alike: self-consistent, wrong on every batch of another size."""

    name = "batch_size_kept_consistently"

    def forward(self, x, *, training):
        if not hasattr(self, "_n"):
            self._n = len(x)
        self.cache = training
        if not training:
            return x - self.eval_offset()
        mu = x.sum(axis=0) / self._n
        m = self.config.momentum
        self._state["running_mean"][...] = m * self._state["running_mean"] + (1 - m) * mu
        return x - mu

    def backward(self, dy, *, input_grad=True):
        training = self.cached()
        return dy - dy.sum(axis=0) / self._n if training else dy.copy()


class EvalCachesWeights(RefDense):
    """Caches W at its first eval forward "to serve predictions fast": a later step or a
    load never reaches predictions."""

    name = "eval_caches_weights"

    def forward(self, x, *, training):
        if training:
            return super().forward(x, training=True)
        if not hasattr(self, "_served"):
            self._served = self._params["W"].copy()
        self.cache = x
        return x @ self._served + self._params["b"]


class BackwardAttributeError(RefDense):
    name = "backward_attribute_error"

    def forward(self, x, *, training):
        self.x = x
        return super().forward(x, training=training)

    def backward(self, dy, *, input_grad=True):
        np.matmul(self.x.T, dy, out=self._grads["W"])
        np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W"].T


class AccumulatingGrads(RefDense):
    name = "accumulating_grads"

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        self._grads["W"] += x.T @ dy
        self._grads["b"] += dy.sum(axis=0)
        return dy @ self._params["W"].T


class RebindsGrads(RefDense):
    """Assigns new gradient arrays instead of writing into the ones grads() handed out."""

    name = "rebinds_grads"

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        self._grads["W"] = x.T @ dy
        self._grads["b"] = dy.sum(axis=0)
        return dy @ self._params["W"].T


class SkipsGradsWithoutInputGrad(RefDense):
    """Returns early when dx is not needed, before computing the parameter gradients."""

    name = "skips_grads_without_input_grad"

    def backward(self, dy, *, input_grad=True):
        if not input_grad:
            return None
        return super().backward(dy)


class LowPrecisionGradient(RefDense):
    """Computes dW in float16 in float32 runs "to save memory": right in float64 runs, where
    the gradient check runs, and wrong in float32 runs, where training runs."""

    name = "low_precision_gradient"

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        low = np.float16 if x.dtype == np.float32 else x.dtype
        self._grads["W"][...] = x.astype(low).T @ dy.astype(low)
        np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W"].T


class DtypeUpcast(RefDense):
    name = "dtype_upcast"

    def forward(self, x, *, training):
        return super().forward(x, training=training) * 1.0 + np.zeros(1)  # float64 zeros


class StaleWeightCopy(RefDense):
    """Evaluates with a copy of W taken at build time, which loading never updates."""

    name = "stale_weight_copy"

    def build(self, input_shape, rng, *, dtype=np.float32):
        out = super().build(input_shape, rng, dtype=dtype)
        self._W_eval = self._params["W"].copy()
        return out

    def forward(self, x, *, training):
        if training:
            return super().forward(x, training=training)
        self.cache = x
        return x @ self._W_eval + self._params["b"]


class CachesWeightsAtFirstForward(RefDense):
    """Keeps a private copy of W from its first forward: later steps and loads are ignored."""

    name = "caches_weights_at_first_forward"

    def forward(self, x, *, training):
        if not hasattr(self, "_W_seen"):
            self._W_seen = self._params["W"].copy()
        self.cache = x
        return x @ self._W_seen + self._params["b"]


class ClassLevelCache(RefDense):
    """Keeps forward's input on the class: every instance backpropagates the last one's."""

    name = "class_level_cache"
    last_x = None

    def forward(self, x, *, training):
        type(self).last_x = x
        self.cache = True
        return x @ self._params["W"] + self._params["b"]

    def backward(self, dy, *, input_grad=True):
        self.cached()
        x = type(self).last_x
        np.matmul(x.T, dy, out=self._grads["W"])
        np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W"].T


class DeadParameter(RefDense):
    name = "dead_parameter"

    def param_specs(self, input_shape):
        return {**super().param_specs(input_shape), "unused": ParamSpec((2,), init="ones")}


class SwishDeclaredMonotone(RefSwish):
    """relu's declaration copied onto swish, which dips below zero before it rises."""

    name = "swish_declared_monotone"
    traits = LayerTraits(monotone_elementwise=True)


class AvgPoolDeclaredMaxSelecting(RefAvgPool):
    """maxpool2d's declaration copied onto an average pool."""

    name = "avg_pool_declared_max_selecting"
    traits = LayerTraits(max_selecting=True)


class FusedPoolLastMaximum(RefScalePooled):
    """A fused pool that keeps the last of tied maxima, where maxpool2d keeps the first."""

    name = "fused_pool_last_maximum"

    @staticmethod
    def pick(blocks):
        return blocks.shape[-1] - 1 - np.argmax(blocks[..., ::-1], axis=-1)


class FusedPoolWrongInEval(RefScalePooled):
    """A fused pool that keeps each window's minimum when not training (a copy-paste slip
    in an eval-only fast path): predict and validation would differ from training."""

    name = "fused_pool_wrong_in_eval"

    def forward_max_pool(self, x, window, *, training):
        pooled = super().forward_max_pool(x, window, training=training)
        if training:
            return pooled
        shape = self.per_channel(x)
        y = x * self._params["gamma"].reshape(shape) + self._params["beta"].reshape(shape)
        return self.windows(y).min(axis=-1)


class FusedPoolStaleWeights(RefScalePooled):
    """A fused pool that folds gamma and beta once, at its first call."""

    name = "fused_pool_stale_weights"

    def forward_max_pool(self, x, window, *, training):
        if not hasattr(self, "folded"):
            self.folded = {k: v.copy() for k, v in self._params.items()}
        live, self._params = self._params, self.folded
        try:
            return super().forward_max_pool(x, window, training=training)
        finally:
            self._params = live


class FusedPoolReusedBuffer(RefScalePooled):
    """A fused pool that writes every result into one buffer it keeps."""

    name = "fused_pool_reused_buffer"

    def forward_max_pool(self, x, window, *, training):
        y = super().forward_max_pool(x, window, training=training)
        if getattr(self, "out", None) is None or self.out.shape != y.shape:
            self.out = np.empty_like(y)
        self.out[...] = y
        return self.out


class FusedPoolAssumesCOrder(RefScalePooled):
    """A fused pool that reads its input's memory in order, right only for C-ordered x:
    wrong behind a fused conv2d, whose output lies channels-last."""

    name = "fused_pool_assumes_c_order"

    def forward_max_pool(self, x, window, *, training):
        return super().forward_max_pool(x.ravel(order="K").reshape(x.shape), window,
                                        training=training)


class FusedPoolWithoutExample(RefScalePooled):
    """Declares fuses_max_pool, but no example has an image to pool."""

    name = "fused_pool_without_example"

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(3,), id="features")]


class MaxPoolSaysAnotherStride(Layer):
    """A 2x2 max pool with stride 2 whose max_pool_window() says stride 1."""

    name = "max_pool_says_another_stride"
    Config = EmptyConfig
    traits = LayerTraits(max_selecting=True)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(f"{self.name} pools images (C, H, W), received {input_shape}")
        c, h, w = input_shape
        return (c, h // 2, w // 2)

    def max_pool_window(self):
        return ((2, 2), (1, 1))

    def forward(self, x, *, training):
        blocks = RefScalePooled.windows(x)
        winner = np.argmax(blocks, axis=-1)
        self.cache = (x.shape, winner)
        return np.take_along_axis(blocks, winner[..., None], axis=-1)[..., 0]

    def backward(self, dy, *, input_grad=True):
        (n, c, h, w), winner = self.cached()
        routed = np.zeros((*winner.shape, 4), dtype=dy.dtype)
        np.put_along_axis(routed, winner[..., None], dy[..., None], axis=-1)
        dx = np.zeros((n, c, h, w), dtype=dy.dtype)
        dx[:, :, : h // 2 * 2, : w // 2 * 2] = routed.reshape(
            n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
            n, c, h // 2 * 2, w // 2 * 2)
        return dx

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(2, 4, 6), id="image")]


class ExportForgetsTheBias(RefDense):
    """An ONNX export of y = x W + b that writes only the product."""

    name = "export_forgets_the_bias"

    def export_onnx(self, graph, inputs, name):
        return graph.add("MatMul", [*inputs, graph.constant(
            self._params["W"].astype(np.float32), f"{name}.W")], name)


class ExportedDense(RefDense):
    """The reference dense with a correct export (for the export fixtures below)."""

    name = "exported_dense"

    def export_onnx(self, graph, inputs, name):
        product = graph.add("MatMul", [*inputs, graph.constant(
            self._params["W"].astype(np.float32), f"{name}.W")], f"{name}.xW")
        return graph.add("Add", [product, graph.constant(
            self._params["b"].astype(np.float32), f"{name}.b")], name)


class ExportFreezesWeightsAtBuild(ExportedDense):
    """Converts its weights to ONNX constants once, at build: a trained or loaded layer
    exports the weights it started with."""

    name = "export_freezes_weights_at_build"

    def build(self, input_shape, rng, *, dtype=np.float32):
        out = super().build(input_shape, rng, dtype=dtype)
        self._frozen = {k: v.astype(np.float32) for k, v in self._params.items()}
        return out

    def export_onnx(self, graph, inputs, name):
        product = graph.add("MatMul", [*inputs, graph.constant(self._frozen["W"],
                                                               f"{name}.W")], f"{name}.xW")
        return graph.add("Add", [product, graph.constant(self._frozen["b"], f"{name}.b")], name)


class ExportNamesItsConstantsAlike(ExportedDense):
    """Adds its weights under fixed names instead of the names graph.constant() returns:
    two such layers in one graph read each other's weights."""

    name = "export_names_its_constants_alike"

    def export_onnx(self, graph, inputs, name):
        graph.constant(self._params["W"].astype(np.float32), "W")
        graph.constant(self._params["b"].astype(np.float32), "b")
        graph.constants["W"] = self._params["W"].astype(np.float32)  # "the" weight
        graph.constants["b"] = self._params["b"].astype(np.float32)
        return graph.add("Add", [graph.add("MatMul", [*inputs, "W"], f"{name}.xW"), "b"], name)


class ExportCachesItsConstants(ExportedDense):
    """Keeps the constants of its first export: a second export after training writes
    the old weights."""

    name = "export_caches_its_constants"

    def export_onnx(self, graph, inputs, name):
        if not hasattr(self, "_exported"):
            self._exported = (self._params["W"].astype(np.float32),
                              self._params["b"].astype(np.float32))
        product = graph.add("MatMul", [*inputs, graph.constant(self._exported[0],
                                                               f"{name}.W")], f"{name}.xW")
        return graph.add("Add", [product, graph.constant(self._exported[1], f"{name}.b")],
                         name)


class ExportHandlesOneRank(RefChannelScale):
    """Exports the per-channel scale for (N, C) inputs only: the (C, H, W) rank the layer
    accepts gets gamma broadcast along the last axis."""

    name = "export_handles_one_rank"

    def export_onnx(self, graph, inputs, name):
        gamma = graph.constant(self._params["gamma"].astype(np.float32), f"{name}.gamma")
        beta = graph.constant(self._params["beta"].astype(np.float32), f"{name}.beta")
        scaled = graph.add("Mul", [*inputs, gamma], f"{name}.scaled")
        return graph.add("Add", [scaled, beta], name)

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(3,), id="features")]


class FlagOnTheClass(RefDropout):
    """Declares stochastic the old way, as a class attribute lamina no longer reads."""

    name = "flag_on_the_class"
    traits = LayerTraits()
    stochastic = True


class ExampleOverrideTypo(RefDropout):
    name = "example_override_typo"

    @classmethod
    def examples(cls):
        return [Example(config={"rate": 0.0}, input_shape=(3,), id="off",
                        extra={"stocastic": False})]


# -- broken losses --------------------------------------------------------------------------


class LossOverflows(RefSoftmaxCrossEntropy):
    name = "loss_overflows"

    def log_proba(self, z):
        e = np.exp(z)
        return np.log(e / e.sum(axis=1, keepdims=True))


class LossReturnsArray(RefSoftmaxCrossEntropy):
    name = "loss_returns_array"

    def forward(self, logits, targets):
        return np.asarray(super().forward(logits, targets))


class LossWeightedByTheBatch(RefSoftmaxCrossEntropy):
    """Class-weighted cross-entropy normalised by the batch's total weight, another
    framework's convention: right for one batch, a different gradient in two shards."""

    name = "loss_weighted_by_the_batch"
    traits = LossTraits(softmax_cross_entropy=False)
    WEIGHTS = np.array([1.0, 2.0, 0.5, 3.0])

    def compute(self, z, y):
        log_p = self.log_proba(z)
        w = (y * self.WEIGHTS[: y.shape[1]].astype(z.dtype)).sum(axis=1)
        total = w.sum()
        self.cache = (np.exp(log_p), y, w, total)
        return float(-np.sum(w * (y * log_p).sum(axis=1)) / total)

    def backward(self):
        p, y, w, total = self.cached()
        return w[:, None] * (p - y) / total


class LossSqueezesTheBatch(RefSoftmaxCrossEntropy):
    """squeeze()s the logits "to drop a stray axis": a batch of one row loses its batch axis."""

    name = "loss_squeezes_the_batch"

    def compute(self, z, y):
        z, y = z.squeeze(), y.squeeze()
        s = z - z.max(axis=-1, keepdims=True)
        log_p = s - np.log(np.exp(s).sum(axis=-1, keepdims=True))
        self.cache = (np.exp(log_p), y)
        return float(-np.sum(y * log_p) / max(len(z) if z.ndim == 2 else 1, 1))


class LossWithATemperature(RefSoftmaxCrossEntropyByHand):
    """Cross-entropy of softmax(z / 2), a temperature left in from an experiment, with
    its gradient derived correctly: self-consistent, and not the documented loss."""

    name = "loss_with_a_temperature"
    traits = LossTraits(softmax_cross_entropy=False)

    def compute(self, z, y):
        return super().compute(z / z.dtype.type(2), y)

    def backward(self):
        return super().backward() / 2

    def predict_proba(self, logits):
        return super().predict_proba(logits / logits.dtype.type(2))


class LossKeepsTheFirstN(RefSoftmaxCrossEntropy):
    """Divides by the N of its first batch ever: right while every batch has that size."""

    name = "loss_keeps_the_first_n"

    def compute(self, z, y):
        self._n = getattr(self, "_n", z.shape[0])
        log_p = self.log_proba(z)
        self.cache = (np.exp(log_p), y)
        return float(-np.sum(y * log_p) / self._n)

    def backward(self):
        p, y = self.cached()
        return (p - y) / p.dtype.type(self._n)


class LossGradientNotAveraged(RefSoftmaxCrossEntropy):
    name = "loss_gradient_not_averaged"

    def backward(self):
        p, y = self.cached()
        return p - y


class LossBackwardWithoutForward(RefSoftmaxCrossEntropy):
    name = "loss_backward_without_forward"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache = (np.zeros((1, 1)), np.zeros((1, 1)))


class LossIndexTargetsOffByOne(RefSoftmaxCrossEntropy):
    """Decodes class indices itself, one class off (its own forward, not the base's)."""

    name = "loss_index_targets_off_by_one"

    def forward(self, logits, targets):
        t = np.asarray(targets)
        if t.ndim == 1:
            targets = np.eye(logits.shape[1], dtype=logits.dtype)[(t + 1) % logits.shape[1]]
        return super().forward(logits, targets)


class LossSoftTargetsAsArgmax(RefSoftmaxCrossEntropy):
    """Accepts soft labels but trains on their argmax."""

    name = "loss_soft_targets_as_argmax"

    def compute(self, z, y):
        return super().compute(z, np.eye(z.shape[1], dtype=z.dtype)[np.argmax(y, axis=1)])


class LossIgnoresDeclaredTargets(RefSparseCrossEntropy):
    """Declares class indices only, but its own forward takes any rows without a word."""

    name = "loss_ignores_declared_targets"

    def forward(self, logits, targets):
        t = np.asarray(targets)
        y = np.eye(logits.shape[1], dtype=logits.dtype)[t] if t.ndim == 1 else t
        return self.compute(np.asarray(logits), y.astype(logits.dtype))


class LossInHalfPrecision(RefSoftmaxCrossEntropy):
    """Computes the softmax in float16 when given float32 logits."""

    name = "loss_in_half_precision"

    def compute(self, z, y):
        low = np.float16 if z.dtype == np.float32 else z.dtype
        value = super().compute(z.astype(low), y.astype(low))
        p, target = self.cache
        self.cache = (p.astype(z.dtype), target.astype(z.dtype))
        return value


class LossClassLevelCache(RefSoftmaxCrossEntropy):
    name = "loss_class_level_cache"
    shared = None

    def compute(self, z, y):
        value = super().compute(z, y)
        type(self).shared = self.cache
        return value

    def backward(self):
        self.cached()
        p, y = type(self).shared
        return (p - y) / p.dtype.type(p.shape[0])


class SquaredErrorPerSample(RefSquaredError):
    """Averages over the N samples only (a per-sample sum of squares) in backward, while
    forward means over every entry: a gradient C times too large."""

    name = "squared_error_per_sample"

    def backward(self):
        d = self.cached()
        return 2 * d / d.dtype.type(d.shape[0])


class SquaredErrorTakesIndices(RefSquaredError):
    """Declares real-valued rows, but its own forward one-hots any 1-D array it is given."""

    name = "squared_error_takes_indices"

    def forward(self, logits, targets):
        t = np.asarray(targets)
        if t.ndim == 1:
            t = np.eye(logits.shape[1])[t.astype(int)]
        return super().forward(logits, t)


class SigmoidCrossEntropyNaive(RefSigmoidCrossEntropy):
    """-(y log p + (1 - y) log(1 - p)) with p = 1 / (1 + exp(-z)): log 0 at large |z|."""

    name = "sigmoid_ce_naive"

    def compute(self, z, y):
        p = 1 / (1 + np.exp(-z))
        self.cache = (p, y)
        loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        return float(np.sum(loss) / loss.size)


class SigmoidCrossEntropyPredictsLogits(RefSigmoidCrossEntropy):
    """predict_proba returns the raw logits: not the probabilities its forward reads."""

    name = "sigmoid_ce_predicts_logits"

    def predict_proba(self, logits):
        return np.array(logits, copy=True)


# -- broken optimizers ------------------------------------------------------------------------


class OptimizerAscends(RefMomentumSGD):
    name = "optimizer_ascends"

    def update(self, params, grads):
        super().update(params, {k: -g for k, g in grads.items()})


class OptimizerRebindsParams(RefMomentumSGD):
    """Puts new arrays into the dict instead of updating the ones the layers hold."""

    name = "optimizer_rebinds_params"

    def update(self, params, grads):
        for key, p in list(params.items()):
            b = self.slot("velocity", key, p) if self.config.momentum else np.zeros_like(p)
            b *= self.config.momentum
            b += grads[key]
            params[key] = p - self.lr * b


class OptimizerFloat64State(RefMomentumSGD):
    """Keeps its velocity in float64 whatever the parameters are. Its own step() checks the
    state's keys but not its dtype (lamina.Optimizer.step would refuse the state)."""

    name = "optimizer_float64_state"

    def step(self, params, grads):
        if self.steps and any(arrays.keys() != params.keys() for arrays in self.slots.values()):
            raise StateError("the state does not cover these parameters")
        for key, p in params.items():
            if self.config.momentum and key not in self.slots["velocity"]:
                self.slots["velocity"][key] = np.zeros(p.shape)  # float64, whatever p is
        self.update(params, grads)
        self.counters["steps"] += 1


class OptimizerKeepsConfigLr(RefMomentumSGD):
    """Reads the learning rate from its config: a schedule setting .lr changes nothing."""

    name = "optimizer_keeps_config_lr"

    def update(self, params, grads):
        lr, self.lr = self.lr, self.config.lr
        try:
            super().update(params, grads)
        finally:
            self.lr = lr


class DecayConfig(SGDConfig):
    weight_decay: float = Field(0.01, ge=0, le=1, description="decoupled weight decay")


class ExemptConfig(DecayConfig):
    exempt: list[FreeText] = Field(default_factory=list, description="parameters not decayed")


class OptimizerDecayReadsConfigLr(RefMomentumSGD):
    """Decoupled weight decay scaled by the configured lr: the gradient step follows a
    schedule's lr, the decay does not (a lr / 10 still moves far less)."""

    name = "optimizer_decay_reads_config_lr"
    Config = DecayConfig

    def update(self, params, grads):
        super().update(params, grads)
        for p in params.values():
            p -= self.config.lr * self.config.weight_decay * p


class OptimizerExemptionNeverMatches(OptimizerDecayReadsConfigLr):
    """Exempts parameters from decay by name, comparing the runner's dotted names in the
    form another framework writes them ("dense_1/b"): the setting does nothing."""

    name = "optimizer_exemption_never_matches"
    Config = ExemptConfig

    def update(self, params, grads):
        RefMomentumSGD.update(self, params, grads)
        for key, p in params.items():
            if key.replace(".", "/") not in self.config.exempt:
                p -= self.lr * self.config.weight_decay * p


class OptimizerMomentumTheOtherWay(RefMomentumSGDByHand):
    """Weighs the old velocity by 1 - momentum and the gradient by momentum, the other way
    round from its documented b = momentum * b + g: self-consistent, converging, and
    not the formula it promises."""

    name = "optimizer_momentum_the_other_way"

    def update(self, params, grads):
        mu = self.config.momentum
        for key, p in params.items():
            if not mu:
                p -= self.lr * grads[key]
                continue
            b = self.slot("velocity", key, p)
            b *= 1 - mu
            b += mu * grads[key]
            p -= self.lr * b


class QuietDecayConfig(SGDConfig):
    weight_decay: float = Field(0.0, ge=0, le=1, description="decoupled weight decay, off")


class OptimizerQuietDecayReadsConfigLr(OptimizerDecayReadsConfigLr):
    """The decay that reads config.lr, off by default: the examples never turn it on."""

    name = "optimizer_quiet_decay_reads_config_lr"
    Config = QuietDecayConfig


class ClipConfig(SGDConfig):
    clip_norm: float | None = Field(None, gt=0, le=1e6, description="clip gradients to this")


class OptimizerIgnoresClipNorm(RefMomentumSGD):
    """Takes an optional clip_norm and never reads it."""

    name = "optimizer_ignores_clip_norm"
    Config = ClipConfig


class OptimizerInertTypo(RefMomentumSGD):
    """Declares a setting inert under a name its config does not have."""

    name = "optimizer_inert_typo"
    inert_settings = {"momentun": "only matters on curved problems"}


class OptimizerHidesState(RefMomentumSGD):
    """Keeps its velocity outside the slots, so state_dict() does not save it."""

    name = "optimizer_hides_state"

    def state_slots(self):
        return ()

    def update(self, params, grads):
        hidden = self.__dict__.setdefault("hidden", {})
        for key, p in params.items():
            b = hidden.setdefault(key, np.zeros_like(p))
            b *= self.config.momentum
            b += grads[key]
            p -= self.lr * b


class OptimizerTakesAnyState(RefMomentumSGD):
    """Its own load_state_dict() and step() take any state: a missing entry starts from
    zero, an unknown one is ignored."""

    name = "optimizer_takes_any_state"

    def load_state_dict(self, state):
        self.lr = float(state.get("#lr", self.lr))
        self.counters["steps"] = int(state.get("#steps", 0))
        self.slots = {slot: {} for slot in self.state_slots()}
        for name, value in state.items():
            slot, _, key = name.partition("/")
            if slot in self.slots:
                self.slots[slot][key] = np.array(value)

    def step(self, params, grads):
        self.update(params, grads)
        self.counters["steps"] += 1


# -- broken blocks ----------------------------------------------------------------------

#: a block's tables kept at module level and returned as they are
_SHARED_TABLES = [{"type": "dense", "units": 3}, {"type": "relu"}]


class BlockSharesItsTables(RefDenseReluBlock):
    """Returns the same dict objects on every call: a caller that changes one changes the
    block for every later use."""

    name = "block_shares_its_tables"

    @classmethod
    def layers(cls, config):
        return _SHARED_TABLES

    @classmethod
    def examples(cls):
        return [Example({"units": 3}, (5,), id="plain")]
