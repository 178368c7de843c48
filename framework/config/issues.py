"""Pydantic's validation errors as config issues: a dotted path, what was received, and a
did-you-mean for a misspelt key, another framework's name for a setting, or a misspelt
choice."""

from __future__ import annotations

import difflib
import enum
import types
import typing

from pydantic import BaseModel, ValidationError

from ..errors import ConfigIssue

#: Keras's and PyTorch's names for settings lamina names otherwise, each with lamina's
#: name(s). An unknown key is pointed to lamina's name only when the config being
#: validated has it, so a third-party plugin naming its settings as the built-ins do
#: gets the same suggestions.
OTHER_NAMES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",),                  # Keras optimizers
    "out_features": ("units",),                # torch.nn.Linear
    "out_channels": ("filters",),              # torch.nn.Conv2d
    "strides": ("stride",),                    # Keras Conv2D, MaxPooling2D
    "kernel_size": ("pool_size",),             # torch.nn.MaxPool2d
    "p": ("rate",),                            # torch.nn.Dropout
    "bias": ("use_bias",),                     # torch.nn.Linear, Conv2d
    "kernel_initializer": ("initializer",),    # Keras Dense, Conv2D
    "eps": ("epsilon",),                       # torch.nn.BatchNorm2d, torch.optim.Adam
    "betas": ("beta_1", "beta_2"),             # torch.optim.Adam
    "shape": ("target_shape",),                # torch.reshape
    "negative_slope": ("slope",),              # torch.nn.LeakyReLU, Keras LeakyReLU
    "dim": ("axis",),                          # torch.nn.Softmax, torch.cat
}
#: a name that means one setting in one framework and another elsewhere: each lamina
#: name it may stand for, the first the config has being the one suggested
OTHER_MEANINGS: dict[str, tuple[str, ...]] = {
    "alpha": ("rho", "slope"),                 # torch.optim.RMSprop; Keras LeakyReLU
}

#: settings other frameworks have and lamina has no use for, with why
NO_SUCH_SETTING: dict[str, str] = {
    "from_logits": "lamina's losses always take the last layer's raw outputs (logits), so "
                   "the network ends without a sigmoid or softmax",
}

#: PyTorch's and Keras's size of a layer's input, which lamina infers from the layer
#: before it, each with the lamina setting beside which it is written.
INFERRED: dict[str, str] = {"in_features": "units", "in_channels": "filters",
                            "input_dim": "units"}


def pydantic_issues(
    exc: ValidationError, prefix: str, model: type[BaseModel] | None = None
) -> list[ConfigIssue]:
    """Turn pydantic's errors into issues with dotted paths and what was received."""
    issues: list[ConfigIssue] = []
    renamed: set[str] = set()  # keys an unknown key was pointed to: not also "missing"
    meant: set[str] = set()  # paths whose value was taken for a misspelt choice
    for err in exc.errors(include_url=False):
        path = prefix
        for part in _without_union_tags(err["loc"], model):
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        kind = err["type"]
        choice = None
        if kind == "extra_forbidden":
            key = str(err["loc"][-1])
            known = list(model.model_fields) if model is not None else []
            names, hint = _key_hint(key, known)
            renamed |= {path.removesuffix(key) + name for name in names}
            allowed = f"known keys: {', '.join(known)}" if known else "remove it"
            message = f"unknown key {key!r}; {hint}{allowed}"
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "value_error" and "received" in err["msg"]:
            message = err["msg"].removeprefix("Value error, ")  # the plugin's own words
        else:
            message = f"{err['msg']} (received {_shown(err['input'])})"
            if kind in ("literal_error", "enum"):
                choice = _close_choice(err["input"], err["loc"], model)
                message += f"; did you mean {choice!r}?" if choice is not None else ""
        same = next((i for i, issue in enumerate(issues) if issue.path == path), None)
        if same is not None and kind != "extra_forbidden":  # one union, several forms
            if path in meant:  # a misspelt choice: the other forms' complaints distract
                continue
            issues[same] = ConfigIssue(path, message if choice is not None else (
                f"{issues[same].message}; or, as another form it takes: {message}"))
        else:
            issues.append(ConfigIssue(path, message))
        if choice is not None:
            meant.add(path)
    return [issue for issue in issues if not (issue.path in renamed
                                              and issue.message == "required key is missing")]


def _key_hint(key: str, known: list[str]) -> tuple[tuple[str, ...], str]:
    """The keys an unknown ``key`` probably meant and the hint naming them: lamina's
    name(s) for another framework's, or the closest spelling."""
    names = OTHER_NAMES.get(key, ())
    meanings = [name for name in OTHER_MEANINGS.get(key, ()) if name in known]
    if meanings:
        names = (meanings[0],)
    if names and all(name in known for name in names):
        if len(names) == 1:
            return names, f"lamina calls it {names[0]!r}; "
        return names, f"lamina splits it into {' and '.join(map(repr, names))}; "
    if key in NO_SUCH_SETTING:
        return (), f"{NO_SUCH_SETTING[key]}; "
    if INFERRED.get(key) in known:
        return (), "lamina infers it from the layer's input: remove it; "
    close = [k for k in known if similar(k, key)]
    return tuple(close[:1]), f"did you mean {close[0]!r}? " if close else ""


def _close_choice(value: object, loc: tuple, model: type[BaseModel] | None) -> str | None:
    """The choice of the setting at ``loc`` closest to a string ``value`` that fits none,
    if one is close."""
    field = model.model_fields.get(loc[0]) if model is not None and loc else None
    if field is None or not isinstance(value, str):
        return None
    choices = _string_choices(field.annotation)
    same = [choice for choice in choices if choice.lower() == value.lower()]
    if same:  # "SAME", TensorFlow's spelling of 'same'
        return same[0]
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _string_choices(annotation: object) -> list[str]:
    """Every string a Literal or an Enum anywhere in ``annotation`` allows."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [member.value for member in annotation if isinstance(member.value, str)]
    if typing.get_origin(annotation) is typing.Literal:
        return [arg for arg in typing.get_args(annotation) if isinstance(arg, str)]
    return [choice for arg in typing.get_args(annotation) for choice in _string_choices(arg)]


def _without_union_tags(loc: tuple, model: type[BaseModel] | None) -> tuple:
    """``loc`` without the name pydantic gives the member of a union a value was tried
    against (``kernel_size.constrained-int``): the user wrote ``kernel_size``."""
    if model is None or len(loc) < 2 or not isinstance(loc[1], str):
        return loc
    field = model.model_fields.get(loc[0]) if isinstance(loc[0], str) else None
    if field is None or typing.get_origin(field.annotation) not in (typing.Union,
                                                                    types.UnionType):
        return loc
    return (loc[0], *loc[2:])


def _shown(value: object, limit: int = 80) -> str:
    """A received value for a message, cut to ``limit`` characters (a config value may be
    a huge table or string)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def similar(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.6
