"""Correct reference plugins, and broken variants that each break one contract.

Every broken class below derives from a reference class and changes as little as
possible, so that the one check meant to catch the bug is the only one to fail
(see test_checks.py for the expected sets).
"""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict, Field

from lamina import (
    Example,
    Layer,
    LayerConfig,
    Loss,
    LossExample,
    Shape,
    ShapeError,
)

# -- reference layers: each must pass every check -----------------------------------------


class DenseConfig(LayerConfig):
    units: int = Field(3, ge=1, le=64, description="output features")


class RefDense(Layer):
    """y = x W + b; x (N, D), W (D, U), b (U,)."""

    name = "ref_dense"
    Config = DenseConfig

    def build(self, input_shape: Shape, rng: np.random.Generator, *, dtype=np.float32) -> Shape:
        if len(input_shape) != 1:
            raise ShapeError(f"ref_dense expects (D,), received {input_shape}")
        self.dtype = np.dtype(dtype)
        self.input_shape, self.output_shape = tuple(input_shape), (self.config.units,)
        self.add_param("W", rng.normal(0, 0.5, (input_shape[0], self.config.units)).astype(dtype))
        self.add_param("b", rng.normal(0, 0.5, self.config.units).astype(dtype))
        return self.output_shape

    def forward(self, x, *, training):
        self.cache = x
        return x @ self._params["W"] + self._params["b"]

    def backward(self, dy):
        x = self.cached()
        np.matmul(x.T, dy, out=self._grads["W"])
        np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W"].T

    @classmethod
    def examples(cls):
        return [Example(config={"units": 3}, input_shape=(4,), id="units_3"),
                Example(config={"units": 1}, input_shape=(2,))]


class LeakyConfig(LayerConfig):
    slope: float = Field(0.1, ge=0.0, le=1.0, description="slope for x < 0")


class RefLeakyRelu(Layer):
    """y = x if x > 0 else slope * x; a kink at 0, any input shape."""

    name = "ref_leaky_relu"
    Config = LeakyConfig

    def build(self, input_shape, rng, *, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.input_shape = self.output_shape = tuple(input_shape)
        return self.output_shape

    def forward(self, x, *, training):
        slope = np.where(x > 0, x.dtype.type(1), x.dtype.type(self.config.slope))
        self.cache = slope
        return x * slope

    def backward(self, dy):
        return dy * self.cached()

    @classmethod
    def examples(cls):
        # 4 * 6 * 6 = 144 elements per sample: more than the finite-difference cap.
        return [Example(config={"slope": 0.1}, input_shape=(4, 6, 6), id="image"),
                Example(config={"slope": 0.0}, input_shape=(5,), id="relu")]


class DropoutConfig(LayerConfig):
    rate: float = Field(0.5, ge=0.0, lt=1.0, description="drop probability")


class RefDropout(Layer):
    """Inverted dropout with its mask from the generator given to build()."""

    name = "ref_dropout"
    Config = DropoutConfig
    stochastic = True

    def build(self, input_shape, rng, *, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.input_shape = self.output_shape = tuple(input_shape)
        self.rng = rng
        return self.output_shape

    def mask(self, x, training):
        if not training:
            return np.ones_like(x)
        keep = self.rng.random(x.shape) >= self.config.rate
        return keep.astype(x.dtype) / x.dtype.type(1 - self.config.rate)

    def forward(self, x, *, training):
        self.cache = self.mask(x, training)
        return x * self.cache

    def backward(self, dy):
        return dy * self.cached()

    @classmethod
    def examples(cls):
        return [Example(config={"rate": 0.5}, input_shape=(6,), id="half"),
                Example(config={"rate": 0.0}, input_shape=(3,), id="off",
                        extra={"stochastic": False})]


class EmptyConfig(LayerConfig):
    pass


class RefAdd(Layer):
    """y = x_1 + ... + x_K; every input gets dy."""

    name = "ref_add"
    Config = EmptyConfig
    multi_input = True

    def build(self, input_shape, rng, *, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.input_shape = tuple(tuple(s) for s in input_shape)
        self.output_shape = self.input_shape[0]
        return self.output_shape

    def forward(self, x, *, training):
        self.cache = len(x)
        return sum(x[1:], x[0].copy())

    def backward(self, dy):
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
    batch_dependent = True

    def build(self, input_shape, rng, *, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.input_shape = self.output_shape = tuple(input_shape)
        self.add_state("running_mean", np.zeros(input_shape, dtype=dtype))
        return self.output_shape

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

    def backward(self, dy):
        training = self.cached()
        return dy - dy.mean(axis=0) if training else dy.copy()

    @classmethod
    def examples(cls):
        return [Example(config={}, input_shape=(4,), id="flat")]


class RefSoftmaxCrossEntropy(Loss):
    """Mean cross-entropy of softmax(z); gradient (p - y) / N."""

    name = "ref_softmax_ce"
    Config = EmptyConfig

    @staticmethod
    def one_hot(targets, z):
        t = np.asarray(targets)
        return np.eye(z.shape[1], dtype=z.dtype)[t] if t.ndim == 1 else t.astype(z.dtype)

    def log_proba(self, z):
        s = z - z.max(axis=1, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))

    def forward(self, logits, targets):
        y = self.one_hot(targets, logits)
        log_p = self.log_proba(logits)
        self.cache = (np.exp(log_p), y)
        return float(-np.sum(y * log_p) / logits.shape[0])

    def backward(self):
        p, y = self.cached()
        return (p - y) / p.dtype.type(p.shape[0])

    def predict_proba(self, logits):
        return np.exp(self.log_proba(logits))

    @classmethod
    def examples(cls):
        return [LossExample(config={}, n_classes=4, id="four")]


REFERENCE = [RefDense, RefLeakyRelu, RefDropout, RefAdd, RefBatchCenter, RefSoftmaxCrossEntropy]

# -- broken layers: one contract broken each ----------------------------------------------


class WrongGradientSign(RefDense):
    name = "wrong_gradient_sign"

    def backward(self, dy):
        return -super().backward(dy)


class MissingGradKey(RefDense):
    name = "missing_grad_key"

    def build(self, input_shape, rng, *, dtype=np.float32):
        out = super().build(input_shape, rng, dtype=dtype)
        del self._grads["b"]
        return out

    def backward(self, dy):
        x = self.cached()
        np.matmul(x.T, dy, out=self._grads["W"])
        return dy @ self._params["W"].T


class InputMutated(RefLeakyRelu):
    name = "input_mutated"

    def forward(self, x, *, training):
        self.cache = np.where(x > 0, x.dtype.type(1), x.dtype.type(self.config.slope))
        x *= self.cache
        return x


class OutputShapeLies(RefDense):
    name = "output_shape_lies"

    def build(self, input_shape, rng, *, dtype=np.float32):
        return (super().build(input_shape, rng, dtype=dtype)[0] + 1,)


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


class UndeclaredBatchCoupling(RefBatchCenter):
    name = "undeclared_batch_coupling"
    batch_dependent = False


class DropoutIgnoresTraining(RefDropout):
    name = "dropout_ignores_training"

    def mask(self, x, training):
        return super().mask(x, False)


class DropoutInEval(RefDropout):
    name = "dropout_in_eval"

    def mask(self, x, training):
        return super().mask(x, True)


class EvalUpdatesState(RefBatchCenter):
    name = "eval_updates_state"

    def forward(self, x, *, training):
        y = super().forward(x, training=training)
        if not training:
            self._state["running_mean"] += x.mean(axis=0)
        return y


class BackwardAttributeError(RefDense):
    name = "backward_attribute_error"

    def forward(self, x, *, training):
        self.x = x
        return super().forward(x, training=training)

    def backward(self, dy):
        np.matmul(self.x.T, dy, out=self._grads["W"])
        np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W"].T


class AccumulatingGrads(RefDense):
    name = "accumulating_grads"

    def backward(self, dy):
        x = self.cached()
        self._grads["W"] += x.T @ dy
        self._grads["b"] += dy.sum(axis=0)
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


class ClassLevelCache(RefDense):
    """Keeps forward's input on the class: every instance backpropagates the last one's."""

    name = "class_level_cache"
    last_x = None

    def forward(self, x, *, training):
        type(self).last_x = x
        self.cache = True
        return x @ self._params["W"] + self._params["b"]

    def backward(self, dy):
        self.cached()
        x = type(self).last_x
        np.matmul(x.T, dy, out=self._grads["W"])
        np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W"].T


class DeadParameter(RefDense):
    name = "dead_parameter"

    def build(self, input_shape, rng, *, dtype=np.float32):
        out = super().build(input_shape, rng, dtype=dtype)
        self.add_param("unused", np.ones(2, dtype=dtype))
        return out


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
    name = "loss_index_targets_off_by_one"

    @staticmethod
    def one_hot(targets, z):
        t = np.asarray(targets)
        if t.ndim == 1:
            return np.eye(z.shape[1], dtype=z.dtype)[(t + 1) % z.shape[1]]
        return t.astype(z.dtype)
