"""The library's one set of config checks: each raises `ConfigError` with one paragraph
that says what was wrong and what is allowed.

`job.py` calls them before any data is built; `train()` and the model call the same ones for
notebook users. The values they check are `config.py`'s dataclasses (a check may also meet
a plain value where an enum is declared: the enums are str enums, equal to their values).
Torch-free, like `config.py`.
"""

from __future__ import annotations

import math

from rasp_hydra.config import (
    ConfigError,
    Device,
    LangConfig,
    OptimizerConfig,
    Positions,
    Precision,
    ScheduleConfig,
    TrainConfig,
    long_test_lengths,
)


def _at_least(what: str, got, least, why: str = "") -> None:
    if got is None or got < least:
        raise ConfigError(f"{what}={got}; it must be at least {least}{why}.")


def _positive_finite(what: str, got: float, hint: str) -> None:
    if not (isinstance(got, (int, float)) and math.isfinite(got) and got > 0):
        raise ConfigError(f"{what}={got}: it must be a finite number above 0 ({hint}).")


SEED_MAX = 2**32 - 1  # numpy's SeedSequence takes no negative seed; torch.manual_seed gets
# train.seed + 7919 * epoch, which must stay below 2**64: 32 bits is what both take safely


def _seed(what: str, got) -> None:
    if not (isinstance(got, int) and 0 <= got <= SEED_MAX):
        raise ConfigError(f"{what}={got}: a seed is a whole number from 0 to {SEED_MAX} "
                          "(2**32 - 1), what numpy's and torch's generators take.")


# The lang fields only a RASP program task (family rasp) reads, with their defaults.
PROGRAM_FIELDS = ("program", "output", "name", "alphabet", "sampler", "classes")


def check_lang_fields(lang) -> None:
    """A field the family does not read is refused, so no setting is stored and ignored.

    Only values that differ from the defaults count: presets and defaults always pass.
    """
    alphabet = lang.alphabet
    if lang.family == "rasp" and alphabet is not None and (
            isinstance(alphabet, bool) or hasattr(alphabet, "__len__") and len(alphabet) == 0):
        raise ConfigError(
            f"lang.alphabet={alphabet!r}: a program task's input tokens are at least one "
            "token, written as characters, a list or a range (lang.alphabet=abc, "
            "lang.alphabet=[10,20,30], lang.alphabet=0..99); this value would be stored in the "
            "config while the run trained on the default tokens. Give the tokens, or "
            "lang.alphabet=null for the "
            "first lang.size of the project's tokens.")
    if lang.family == "rasp" and alphabet is not None and lang.size is not None:
        tokens = str(alphabet) if isinstance(alphabet, int | float) else alphabet  # 123: chars
        size = (len(tokens) - 1) // 2 if lang.sampler == "dyck" else len(tokens)
        if size != lang.size:
            raise ConfigError(
                f"lang.size={lang.size} and lang.alphabet={lang.alphabet!r}: a program task "
                "takes its tokens from lang.alphabet when it is given, so lang.size would be "
                f"ignored. Give one of them (lang.size=null), or a size that matches ({size}).")
    defaults = LangConfig(family=lang.family)
    ignored = [] if lang.family == "rasp" else [
        f"lang.{f}={getattr(lang, f)!r}" for f in PROGRAM_FIELDS
        if getattr(lang, f) != getattr(defaults, f)]
    if lang.long_test_size == 0:
        ignored += [f"lang.{f}={getattr(lang, f)}" for f in ("long_min_len", "long_max_len")
                    if getattr(lang, f) != getattr(defaults, f)]
    if ignored:
        raise ConfigError(
            f"{', '.join(ignored)}: the task family {lang.family!r} does not use "
            f"{'this field' if len(ignored) == 1 else 'these fields'} here, so the run would "
            "ignore it. Every family reads lang.family, size, bos, with_attns, min_len, "
            "max_len, train_size, valid_size, test_size, data_seed and long_test_size, and "
            "long_min_len and long_max_len only with long_test_size > 0; "
            f"{', '.join(PROGRAM_FIELDS)} belong to RASP program tasks (lang=rasp) alone.")


def check_lang(lang: LangConfig) -> None:
    """Lengths, split sizes and seeds that a run can be built from."""
    check_lang_fields(lang)
    _seed("lang.data_seed", lang.data_seed)
    if not 1 <= lang.min_len <= lang.max_len:
        raise ConfigError(
            f"lang.min_len={lang.min_len} and lang.max_len={lang.max_len}: lengths must "
            "satisfy 1 <= min_len <= max_len.")
    for split in ("train", "valid", "test"):
        _at_least(f"lang.{split}_size", getattr(lang, f"{split}_size"), 1,
                  ": training needs sequences to train on, validate on and test on")
    _at_least("lang.long_test_size", lang.long_test_size, 0)
    lo, hi = long_test_lengths(lang.max_len, lang.long_min_len, lang.long_max_len)
    if lang.long_test_size > 0 and not 1 <= lo <= hi:
        raise ConfigError(
            f"lang.long_min_len={lo} and lang.long_max_len={hi}: the longer test split needs "
            "1 <= min <= max (by default they are max_len + 1 and 2 * max_len).")


def check_model_shape(layers: int, heads: int, d_model: int, ff: int, dropout: float,
                      positions) -> None:
    """A transformer these numbers describe can exist."""
    for what, got in (("layers", layers), ("heads", heads), ("d_model", d_model), ("ff", ff)):
        _at_least(f"model.{what}", got, 1)
    if d_model % heads:
        raise ConfigError(
            f"model.d_model={d_model} is not divisible by model.heads={heads}: each head gets "
            "d_model / heads dimensions. Choose a d_model that is a multiple of the number "
            "of heads.")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout={dropout}; it must be in [0, 1).")
    if positions not in list(Positions):  # a member, or its value: a str enum equals it
        raise ConfigError(f"model.positions={positions!r} is unknown; allowed: "
                          f"{', '.join(p.value for p in Positions)}.")


def check_max_len(max_len: int, longest: int) -> None:
    if max_len < longest:
        raise ConfigError(
            f"model.max_len={max_len} is shorter than the longest sequence the data holds "
            f"({longest}, BOS included). Set model.max_len >= {longest}, or null to size it "
            "from the data.")


def check_supervision(task, layers: int, heads: int) -> None:
    """Every supervised (layer, head) of `task` exists in a layers x heads model."""
    missing = [(l, h) for l, h in task.supervised_heads if l >= layers or h >= heads]
    if missing:
        names = ", ".join(f"layer {l} head {h}" for l, h in missing)
        raise ConfigError(
            f"{task.name} supervises attention of {names}, which a model with {layers} layers "
            f"and {heads} heads per layer does not have (layers and heads count from 0). "
            f"Train with at least {max(l for l, _ in task.supervised_heads) + 1} layers and "
            f"{max(h for _, h in task.supervised_heads) + 1} heads, or drop the _with_attns "
            "suffix (lang.with_attns=false).")


def check_optimizer(opt: OptimizerConfig, schedule: ScheduleConfig) -> None:
    _positive_finite("optimizer.lr", opt.lr, "the paper uses 3e-4 and 1e-4")
    for what in ("momentum", "weight_decay"):
        got = getattr(opt, what)
        if not (math.isfinite(got) and got >= 0):
            raise ConfigError(f"optimizer.{what}={got}; it must be a finite number >= 0.")
    _positive_finite("schedule.gamma", schedule.gamma,
                     "the per-epoch decay factor; the paper uses 0.98 and 0.99, 1 keeps lr")


def check_train(tc: TrainConfig) -> None:
    _seed("train.seed", tc.seed)
    for what, least in (("epochs", 1), ("batch_size", 1), ("eval_batch_size", 1),
                        ("reset_patience", 0), ("perfect_acc_epochs", 1)):
        _at_least(f"train.{what}", getattr(tc, what), least)
    if tc.num_threads is not None:
        _at_least("train.num_threads", tc.num_threads, 1, ", or null for this job's share")
    if not (math.isfinite(tc.attn_loss_c) and tc.attn_loss_c >= 0):
        raise ConfigError(f"train.attn_loss_c={tc.attn_loss_c}; it must be a finite number "
                          ">= 0 (0 turns attention supervision off).")
    if str(tc.progress).lower() not in ("auto", "true", "false"):
        raise ConfigError(f"train.progress={tc.progress!r} is unknown; allowed: auto (a bar "
                          "when the output is a terminal), true, false.")
    if tc.precision not in list(Precision):
        raise ConfigError(f"train.precision={tc.precision!r} is unknown; allowed: "
                          f"{', '.join(p.value for p in Precision)}.")
    if tc.device not in list(Device):
        raise ConfigError(f"train.device={tc.device!r} is unknown; allowed: "
                          f"{', '.join(d.value for d in Device)}.")


def check_precision(precision, device: str, capability: tuple[int, int] | None) -> None:
    """Refuse a precision the device cannot compute in: TF32 is a mode of NVIDIA's tensor
    cores (compute capability 8.0 on), and bfloat16 needs them too on a GPU; a CPU runs
    bfloat16 autocast, but has no TF32 (its float32 matmuls stay float32)."""
    if precision not in list(Precision):
        raise ConfigError(f"train.precision={precision!r} is unknown; allowed: "
                          f"{', '.join(p.value for p in Precision)}.")
    precision = Precision(precision)
    if precision is Precision.fp32:
        return
    if device == "cpu" and precision is Precision.tf32:
        raise ConfigError(
            "train.precision=tf32 asks for TF32 matmuls, a mode of NVIDIA GPUs (compute "
            "capability 8.0 and later), but this run trains on the CPU, where a float32 "
            "matmul is float32 whatever is asked, so the setting would change nothing while "
            "the record said otherwise. Use train.precision=fp32 (the default) or bf16 "
            "(bfloat16 autocast, which CPUs run) here, or train on such a GPU "
            "(train.device=cuda).")
    if device == "cuda" and (capability is None or capability < (8, 0)):
        got = "unknown" if capability is None else f"{capability[0]}.{capability[1]}"
        raise ConfigError(
            f"train.precision={precision.value} needs an NVIDIA GPU of compute capability "
            f"8.0 or later (Ampere, Hopper: A100, H100, H200), but this GPU's is {got}, "
            "which computes it slowly or not at all. Use train.precision=fp32 on this GPU.")


def check_device(device, cuda_available: bool) -> None:
    if device == "cuda" and not cuda_available:
        raise ConfigError(
            "train.device=cuda, but torch sees no CUDA device on this machine. Use "
            "train.device=cpu, or train.device=auto to take a GPU only when there is one.")
