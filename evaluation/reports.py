"""Reports of evaluation rows: the Markdown table, the "Best ..." line, the JSON files and the PSNR-per-epoch plot."""
import json
import os

from evaluation.scorer import FIDELITY
from imaging.files import check_writable_parent
from utils import UserError, atomic_path

METRIC_NOTE = ("psnr/ssim from metrics/fidelity.py: SR rounded to uint8; Y = MATLAB rgb2ycbcr luma (not rounded); "
               "SSIM = Wang et al. (11x11 Gaussian 1.5, valid); niqe from metrics/niqe.py (BasicSR conventions, "
               "lower is better; options in each row's metric_options); -o value = psnr_rgb on DIV2K, psnr_y on "
               "benchmark folders (else the first metric), first --dataset")


def _metric(name):
    from metrics import registry

    return registry.get_metric(name)


def _default_metrics(row):
    """True for a row of the default PSNR/SSIM set (or an older row without a metrics list)."""
    return row.get("metrics") is None or list(row["metrics"]) == list(FIDELITY)


def primary_metric(row):
    """The number the -o file and the table lead with: RGB PSNR on DIV2K (seed), Y PSNR on test sets; else the
    row's first metric (NIQE for no-reference rows)."""
    if _default_metrics(row):
        return ("psnr_y", "ssim_y") if row["kind"] == "benchmark" else ("psnr_rgb", "ssim_rgb")
    return tuple(row["metrics"])


def lead_value(row):
    """The row's primary number (what the seed-format -o file holds for its model)."""
    return row[primary_metric(row)[0]]


def progress_line(row, name):
    """One stderr line per evaluated (model, dataset, scale)."""
    p = primary_metric(row)[0]
    return f"{_metric(p).label or p} = {row[p]:.4f} ({row['dataset']} x{row['scale']}) for model {name}"


def _fmt(name, value):
    return f"{value:.2f}" if name.startswith("psnr") else f"{value:.4f}"


def _column_head(row):
    names = primary_metric(row)
    where = {"hr": f" HR x{row['scale']}", "as-is": ""}.get(row.get("input"), f" x{row['scale']}")
    if _default_metrics(row):
        return f"{row['dataset']}{where} ({'Y' if row['kind'] == 'benchmark' else 'RGB'})"
    labels = [(_metric(n).label or n) + ("" if _metric(n).higher_is_better else " ↓") for n in names]
    return f"{row['dataset']}{where} ({' / '.join(labels)})"


def markdown_table(rows):
    """Rows = models, columns = dataset x scale (x input), cells 'PSNR / SSIM' (Y on test sets, RGB on DIV2K) or
    the requested metrics joined by ' / ' (↓: lower is better)."""
    columns = list(dict.fromkeys(_column_head(r) for r in rows))
    models = list(dict.fromkeys(r["label"] for r in rows))
    cells = {}
    for r in rows:
        cells[(r["label"], _column_head(r))] = " / ".join(_fmt(n, r[n]) for n in primary_metric(r))
    lines = ["| " + " | ".join(["Model"] + columns) + " |", "|" + "|".join(["---"] + [":---:"] * len(columns)) + "|"]
    for m in models:
        lines.append("| " + " | ".join([m] + [cells.get((m, c), "-") for c in columns]) + " |")
    return "\n".join(lines)


def best_line(rows, seed):
    """'Best PSNR = X for model Y' over the seed-format {model: value} (the first row's metric and direction),
    after a 'Bicubic PSNR = ... beats every model' line when the baseline beats them all."""
    lead = primary_metric(rows[0])[0] if rows else "psnr_y"
    metric = _metric(lead)
    pick = max if metric.higher_is_better else min
    best = pick(seed, key=seed.get)
    title = "PSNR" if lead.startswith("psnr") else (metric.label or lead)
    line = f"Best {title} = {seed[best]:.4f} for model {best}"
    first = next((r for r in rows if r.get("model") == best), None)
    if first is None or best == "bicubic":
        return line
    for r in rows:  # the baseline on the best model's own (dataset, scale); it is not in the seed file
        if (r.get("model") == "bicubic" and r.get("dataset") == first.get("dataset")
                and r.get("scale") == first.get("scale") and lead in r):
            if r[lead] != seed[best] and pick(r[lead], seed[best]) == r[lead]:  # said first: the Best line stays last
                line = (f"Bicubic {title} = {r[lead]:.4f} on {r.get('dataset')} x{r.get('scale')} beats every model "
                        "(the seed file lists models only)\n" + line)
            break
    return line


def write_json(path, obj):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def write_results(path, command, rows):
    """The full results file: the command, how the numbers were made, one row per (model, dataset, scale)."""
    write_json(path, {"command": list(command), "metric_note": METRIC_NOTE, "rows": rows})


def plot_epochs(path, rows):
    """PSNR versus epoch, one line per (dataset, scale), over checkpoints whose names carry the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {}
    for r in rows:
        if r["model"] == "bicubic" or r.get("epoch") is None:
            continue
        p = primary_metric(r)[0]
        series.setdefault(f"{r['dataset']} x{r['scale']} ({p})", []).append((r["epoch"], r[p]))
    if not series:
        raise UserError("--plot needs checkpoints named epoch-XXX-...; none of the benchmarked files is")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in series.items():
        pts.sort()
        ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", label=label)
    for r in rows:  # bicubic baselines as horizontal references
        if r["model"] == "bicubic":
            ax.axhline(r[primary_metric(r)[0]], linestyle="--", linewidth=0.8, color="grey")
    names = {primary_metric(r)[0] for r in rows}
    ax.set_xlabel("epoch")
    ax.set_ylabel("PSNR (dB)" if all(n.startswith("psnr") for n in names) else " / ".join(sorted(names)))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def check_output_dir(path, option):
    """UserError unless `path` can be made as a folder of plots (checked before any work; nothing is created)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option} {path} is a file, not a directory; give a directory for the plots")
    check_writable_parent(os.path.abspath(path), option, path)
