"""The printed table, its header and the bar chart of `fastcnn bench`."""

from __future__ import annotations

import numpy as np

from fastcnn._atomic import write_atomically


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


HEAD = (
    f"{'op':<14}{'pass':<16}{'shape':<26}{'numpy ms':>10}{'fastcnn ms':>12}"
    f"{'fastcnn rate':>18}{'x numpy':>9}{'torch ms':>10}{'x torch':>9}"
)


def format_row(r: dict) -> str:
    lead = f"{r['op']:<14}{r['pass']:<16}{r['shape']:<26}"
    if r["status"] == "skipped":
        return lead + f"skipped: {r['reason']}"
    if r["status"] == "error":
        return lead + f"ERROR (row aborted): {r['reason']}"
    if r["status"] == "mismatch":
        return lead + f"MISMATCH vs NumPy (row aborted): {r['reason']}"
    rate = f"{r['fastcnn_rate']:.1f} {r['unit']}"
    line = (
        lead
        + f"{_fmt(r['numpy_ms']):>10}{_fmt(r['fastcnn_ms']):>12}{rate:>18}"
        + f"{_fmt(r['speedup_vs_numpy'], '.2f') + 'x':>9}"
    )
    if r["torch_status"] == "ok":
        line += f"{_fmt(r['torch_ms']):>10}{_fmt(r['speedup_vs_torch'], '.2f') + 'x':>9}"
    elif r["torch_status"]:
        line += f"  torch {r['torch_status']}"
    return line


def plot(rows: list[dict], path: str, meta: dict) -> None:
    from matplotlib.figure import Figure

    timed = [r for r in rows if r["status"] == "ok"]
    labels = [f"{r['op']} {r['pass']}\n{r['shape']}" for r in timed]
    y = np.arange(len(timed))
    fig = Figure(figsize=(9, 1.0 + 0.42 * max(len(timed), 1)), layout="constrained")
    ax = fig.add_subplot()
    with_torch = any(r["torch_ms"] for r in timed)
    h = 0.4 if with_torch else 0.8
    ax.barh(y, [r["speedup_vs_numpy"] for r in timed], h, label="fastcnn")
    if with_torch:
        ax.barh(
            y + h,
            [r["numpy_ms"] / r["torch_ms"] if r["torch_ms"] else 0 for r in timed],
            h,
            label="torch",
        )
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y + (h / 2 if with_torch else 0), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over NumPy (higher is better)")
    ax.set_title(
        f"fastcnn {meta['fastcnn_version']} ({meta['cpu_variant']}), {meta['threads']} threads"
    )
    ax.legend()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=120))


def print_header(meta: dict, warmup: int, repeats: int) -> None:
    p = print
    p(
        f"fastcnn {meta['fastcnn_version']} bench: CPU variant {meta['cpu_variant']}, "
        f"{meta['threads']} threads for every library, median of {repeats} calls after {warmup} "
        "warm-up calls"
    )
    p(f"CPU: {meta['cpu']}   Python {meta['python']}")
    p(f"NumPy {meta['numpy_version']} ({meta['numpy_blas']}; {meta['numpy_blas_runtime']})")
    for name, value in meta["blas_env"].items():
        if value is None:
            p(f"{name}: not set")
        else:
            p(
                f"{name}={value}: set, it overrides OpenBLAS's tuning and may slow NumPy "
                "(unset to compare)"
            )
    if meta["torch_version"]:
        p(f"torch {meta['torch_version']}")
    p("speed-up: x numpy = numpy ms / fastcnn ms, x torch = torch ms / fastcnn ms (higher: faster)")
    p("")
