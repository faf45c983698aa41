"""The model side and the fits: the residual stream after the embedding and after each
layer at the sampled positions, the untrained model a run started from (the control), and
one linear probe per (s-op, layer) with scikit-learn, scored against its baseline. Its one
reason to change: how a probe is fitted and scored.
"""

from __future__ import annotations

import warnings

from rasp_hydra.probe.program import Positions

MANY_VALUES = 20  # numbers with more distinct values than this are regressed, not classified
DECODABLE = 0.8  # skill at or above: decodable
OVER_CONTROL = 0.2  # trained skill minus control skill at or above: training put it there

MAX_ITER = 200  # logistic regression iterations (lbfgs)
COLUMNS = ["sop", "kind", "layer", "metric", "trained", "control", "difference", "baseline",
           "decodable", "over_control", "compiled_layer", "values", "n_train", "n_test",
           "unseen"]


def residual_streams(model, pos: Positions, batch: int = 256) -> list:
    """Per layer 0..L: float32 array [P, d] of the residual stream at the sampled positions
    (in their order: ``pos.b`` ascends, so batch after batch keeps it)."""
    import numpy as np
    import torch

    parts = []
    for s in range(0, len(pos.lengths), batch):
        lens = pos.lengths[s:s + batch]
        hs = model.hidden_states(pos.tokens[s:s + batch, :int(lens.max())], lens)
        sel = (pos.b >= s) & (pos.b < s + batch)
        parts.append([h[pos.b[sel] - s, pos.i[sel]] for h in hs])
    return [np.asarray(torch.cat([p[layer] for p in parts]), dtype=np.float32)
            for layer in range(len(parts[0]))]


def initial_model(trained, seed: int):
    """The untrained model the run of `trained` started from: the Trainer seeds torch with
    train.seed right before building the Encoder (weights are drawn on the CPU on any
    device)."""
    import torch

    from rasp_hydra.model import Encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = Encoder(trained.cfg, trained.vocab_size, trained.n_out, trained.pad_id)
    return model.eval()


# ----------------------------------------------------------------------- fits

def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def encode_labels(train: list, test: list):
    """(kind, y_train, y_test, distinct values): numerical (floats) when every value is a
    number and there are more than MANY_VALUES of them, else categorical (class ids)."""
    import numpy as np

    from rasp_hydra.rasp.evaluate import value_key

    keys = {value_key(v) for v in train + test}
    if len(keys) > MANY_VALUES and all(_is_number(v) for v in train + test):
        return ("numerical", np.array(train, dtype=np.float64),
                np.array(test, dtype=np.float64), len(keys))
    ids: dict = {}
    y = [ids.setdefault(value_key(v), len(ids)) for v in train + test]
    return "categorical", np.array(y[:len(train)]), np.array(y[len(train):]), len(keys)


def fit_probe(kind: str, x_train, y_train, x_test, y_test) -> float:
    """Test accuracy (categorical) or R^2 (numerical) of a linear probe fitted on train."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = Ridge(alpha=1.0) if kind == "numerical" else LogisticRegression(max_iter=MAX_ITER)
    probe = make_pipeline(StandardScaler(), head)
    with warnings.catch_warnings():  # a probe short of convergence is still a lower bound
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test))


def skill(score: float, baseline: float) -> float:
    return (score - baseline) / (1.0 - baseline) if baseline < 1.0 else float("nan")


def probe_matrix(trained: dict, control: dict, labels: dict, compiled: dict, layers: int):
    """The probes' DataFrame (COLUMNS): ``trained``/``control`` map split -> [P, d] arrays
    per layer; ``labels`` split -> s-op -> values."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    # One BLAS thread: a probe's products are small (positions x d_model x values), and
    # BLAS threads that spin-wait on a busy machine cost 10x the work (measured: 13 s
    # instead of 1 s of CPU for one 100-class fit on the shared 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"):
        return _probe_matrix(trained, control, labels, compiled, layers)


def _probe_matrix(trained, control, labels, compiled, layers):
    import numpy as np
    import pandas as pd

    rows = []
    for name, layer_of in compiled.items():
        train, test = labels["train"][name], labels["test"][name]
        kind, y_train, y_test, n_values = encode_labels(train, test)
        seen = np.ones(len(y_test), dtype=bool)
        if kind == "numerical":
            metric, baseline = "r2", 0.0
        else:
            # a test value the train positions never show is one no classifier fitted on
            # them can name: such positions are left out (and counted), not scored wrong
            seen = np.isin(y_test, y_train)
            y_test = y_test[seen]
            metric = "accuracy"
            majority = np.bincount(y_train).argmax()
            baseline = float(np.mean(y_test == majority)) if len(y_test) else float("nan")
        # nothing to fit, or nothing to score: reported, not probed
        one_value = len(np.unique(y_train)) < 2 or not len(y_test)
        for layer in range(layers + 1):
            t = c = float("nan")
            if not one_value:
                t = fit_probe(kind, trained["train"][layer], y_train,
                              trained["test"][layer][seen], y_test)
                c = fit_probe(kind, control["train"][layer], y_train,
                              control["test"][layer][seen], y_test)
            st, sc = skill(t, baseline), skill(c, baseline)
            rows.append({
                "sop": name, "kind": "constant" if one_value else kind, "layer": layer,
                "metric": metric, "trained": t, "control": c, "difference": t - c,
                "baseline": baseline, "decodable": bool(st >= DECODABLE),
                "over_control": bool(st - sc >= OVER_CONTROL), "compiled_layer": layer_of,
                "values": n_values, "n_train": len(y_train), "n_test": len(y_test),
                "unseen": int((~seen).sum())})
    return pd.DataFrame(rows, columns=COLUMNS)
