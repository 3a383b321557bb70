"""The paper's figures and the search's trade-offs, drawn from a results root (PNG, plus a CSV of
the plotted numbers beside each). Every plotted number is a test-image number (the rows' plain
metric columns and per-image lists; pipeline/cell.py): what a search chose on never appears.

One figure shows one study, one GNIME configuration and one trained GNIME: ``make_figures``
refuses, in one line naming the flag it needs, rows of several studies without ``--study``, a
study of several GNIME configurations (a search's trials, a grid) without ``--trial``, and several
GNIME seeds without ``--gnime-seed``. The reconstruction figures of a search belong to its
held-out report (study/heldout.py: ``--study <search>-<explainer>-report``), whose figures also
draw the search it reports on.

- ``reconstructions-<dataset>-<explainer>``: Figures 1 and 4. For the test images every cell of a
  study keeps (pipeline/cell.py ``figure_positions``), the target image and what each attacker
  reconstructs from what each defence released: PredMI, ExpMI without defence, RND, OND, GNIME;
  each reconstruction's SSIM printed under it; RND and OND at the GNIME shown where they were run.
- ``perturbation-<dataset>-<explainer>``: Figure 5. The histogram of GNIME's per-map perturbation
  MSE over the test images, with two marked cases as in the paper, a common one (nearest the
  median) and an extreme one, each shown as its image x, clean map e and released map e_hat; both
  are chosen among the images every row keeps (the extreme one is the largest of those, not
  necessarily of all test images, whose maps are not kept).
- ``attributes-<dataset>``: Figure 6. The F1 of each attribute classifier on the reconstructions,
  per defence (rows with f1_* values only).
- ``frontier-<study>-<explainer>``: the held-out frontier (report/frontier.py) of a study with
  utility-matched RND and OND (a held-out report, a matrix with ``--match``): attack SSIM against
  utility (DeePSiM at the paper's N) and against the perturbation; GNIME's points with a band of
  +- its GNIME-seed spread, RND and OND matched to its perturbation (open markers) and to its
  utility (filled), ExpMI without defence and PredMI as lines, the paper's GNIME (Tables 1 and 3)
  as a star. It needs no choice of configuration: every point of the study is on it.
- ``search-<search>-<explainer>``: for a search (a search study, or the one a report follows),
  each finished trial's attack SSIM and utility on the test images (its own attackers) against
  lambda and against gamma; ``pareto-<search>-<explainer>``: every trial in (attack SSIM, utility)
  on the test images, with the Pareto front and the chosen trial as the search determined them on
  the selection images.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import GnimeRayError, echo
from ..paper import paper_operating_point
from ..store.root import read_csv
from ..store.rows import read_figure_sample, read_rows
from ..study.record import read_record
from .frontier import frontier
from .tables import require_held_out

Log = Callable[[str], None]
COLUMNS = (("predmi", "none", "PredMI"), ("expmi", "none", "ExpMI (no defence)"), ("expmi", "rnd", "RND"),
           ("expmi", "ond", "OND"), ("expmi", "gnime", "GNIME"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _null_formatter():
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def _write_csv(path: Path, header: list[str], lines: list[list]) -> None:
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, line)) for line in lines]) + "\n")


def _save(fig, png: Path) -> Path:
    """Lay out, write as PNG (110 dpi) and close ``fig``; returns ``png``."""
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    _plt().close(fig)
    return png


def _finite(v) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _trials(out: str, studies: set[str]) -> list[dict]:
    found = []
    for study in sorted(studies):
        table = read_csv(out, f"_trials/{study}.csv")
        if table is not None:
            found += table.to_pylist()
    return found


def _image(a: np.ndarray) -> np.ndarray:
    """(C, H, W) -> what imshow takes: (H, W) grey or (H, W, 3)."""
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else np.clip(a.astype(np.float32), 0, 1)
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def _map(a: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(np.float32).mean(0), 0, 1)  # channels averaged, for display


def _pick(rows: list[dict]) -> Optional[dict]:
    """The row of the smallest attack seed."""
    return min(rows, key=lambda r: r["attack_seed"]) if rows else None


def make_figures(out: str, dest: Path, study: Optional[str] = None, dataset: Optional[str] = None,
                 trial: Optional[str] = None, gnime_seed: Optional[int] = None, log: Log = echo) -> list[Path]:
    """Draw every figure the rows of one study under ``out`` support into ``dest``; returns the
    files written. GnimeRayError (one line) when there is nothing to draw or the rows need a choice
    (module docstring)."""
    rows = read_rows(out).to_pylist()
    if study is None:
        studies = sorted({r["study"] for r in rows})
        if len(studies) > 1:
            raise GnimeRayError(f"the rows under {out} hold several studies ({', '.join(studies)}): pass --study "
                                f"(one figure shows one study)")
        study = studies[0] if studies else None
    rows = [r for r in rows if r["study"] == study]
    if not rows:
        raise GnimeRayError(f"no rows{' of study ' + repr(study) if study else ''} under {out}")
    if dataset is None:
        datasets = sorted({r["dataset"] for r in rows})
        if len(datasets) > 1:
            raise GnimeRayError(f"the rows hold several datasets ({', '.join(datasets)}): pass --dataset")
        dataset = datasets[0]
    rows = [r for r in rows if r["dataset"] == dataset and r.get("aux_dataset", "same") == "same"]
    if not rows:
        raise GnimeRayError(f"no rows of dataset {dataset!r} under {out}")
    if not any(r.get("figure_sample") for r in rows):
        raise GnimeRayError(f"the rows under {out} keep no figure data (written by an earlier version of gnime_ray); "
                            f"run the study again to draw figures")
    require_held_out(rows)
    dest.mkdir(parents=True, exist_ok=True)
    record = read_record(out, study) or {}
    report_of = record.get("identity", {}).get("report_of") or ""  # "<search>/<trial>" for a held-out report
    search = study if record.get("kind") == "search" else (report_of.split("/")[0] or None)
    written: list[Path] = []
    frontier_study = any(r.get("matched_on") in ("utility", "utility-topk") for r in rows)
    if frontier_study:
        points, _ = frontier(rows, study)
        for explainer in sorted({p["explainer"] for p in points if p["defense"] == "gnime"}):
            written += _frontier(dest, study, dataset, explainer, points)
    for explainer in sorted({r["explainer"] for r in rows if r["explainer"] != "none"}):
        try:
            config = _one_configuration(rows, study, explainer, trial, gnime_seed)
        except GnimeRayError as exc:
            if not frontier_study:
                raise
            log(f"figures: no reconstructions of {explainer}: {exc}")
            continue
        if config is None:
            continue
        written += _reconstructions(out, dest, rows, dataset, explainer, config, log)
        written += _perturbation(out, dest, rows, dataset, explainer, config)
    written += _attributes(dest, rows, dataset)
    if search is not None:
        search_rows = [r for r in read_rows(out).to_pylist() if r["study"] == search]
        for (name, explainer), group in sorted(_by_search(_trials(out, {search})).items()):
            written += _search(dest, name, explainer, group, search_rows)
    if not written:
        raise GnimeRayError(f"nothing to draw for dataset {dataset!r} under {out}")
    for path in written:
        log(f"figures: {path}")
    return written


def _one_configuration(rows: list[dict], study: str, explainer: str, trial: Optional[str],
                       gnime_seed: Optional[int]) -> Optional[tuple]:
    """(lambda, NG width, gamma, study seed, GNIME seed) of the one GNIME the explainer's figures
    show (None when the study has no GNIME row for it); GnimeRayError naming the flag that would
    make the choice when the rows hold several."""
    gnime = [r for r in rows if r["explainer"] == explainer and r["defense"] == "gnime" and r.get("figure_sample")]
    if trial is not None:
        gnime = [r for r in gnime if r["trial"] == trial]
        if not gnime:
            trials = sorted({r["trial"] for r in rows if r["defense"] == "gnime"})
            raise GnimeRayError(f"study {study!r} has no GNIME row of trial {trial!r} for {explainer}; its trials: "
                                f"{', '.join(trials)}")
    if not gnime:
        return None
    # a missing gamma reads as NaN, and NaN != NaN: every one becomes the one math.nan object, which a set
    # recognises by identity, so GNIMEs of one configuration at GNIME's own perturbation are one configuration
    configs = sorted({(r["lambda"], r["ng_width"], math.nan if r["gamma"] is None or math.isnan(r["gamma"])
                       else r["gamma"], r["study_seed"]) for r in gnime}, key=str)
    if len(configs) > 1:
        trials = sorted({r["trial"] for r in gnime})
        which = f"pass --trial (one of {', '.join(trials)})" if all(trials) else "give the configuration its own study"
        raise GnimeRayError(f"study {study!r} holds {len(configs)} GNIME configurations for {explainer}: {which}; "
                            f"a search's reconstructions are its held-out report's (--study {study}-{explainer}-report)")
    seeds = sorted({r["gnime_seed"] or 0 for r in gnime})
    if gnime_seed is None and len(seeds) > 1:
        raise GnimeRayError(f"study {study!r} trained {len(seeds)} GNIMEs of this configuration for {explainer}: pass "
                            f"--gnime-seed (one of {', '.join(map(str, seeds))})")
    chosen = seeds[0] if gnime_seed is None else gnime_seed
    if chosen not in seeds:
        raise GnimeRayError(f"study {study!r} has no GNIME seed {chosen} for {explainer}; its GNIME seeds: "
                            f"{', '.join(map(str, seeds))}")
    return (*configs[0], chosen)


def _at(rows: list[dict], explainer: str, config: tuple, attack: str, defense: str) -> Optional[dict]:
    lam, width, gamma, study_seed, gnime_seed = config
    found = [r for r in rows if r["attack"] == attack and r["defense"] == defense and r["study_seed"] == study_seed
             and r.get("figure_sample")]
    if attack == "expmi":
        found = [r for r in found if r["explainer"] == explainer]
    if defense in ("rnd", "ond", "gnime"):
        found = [r for r in found if r["lambda"] == lam and r["ng_width"] == width and _same(r["gamma"], gamma)
                 and (r["gnime_seed"] or 0) == gnime_seed]
    return _pick(found)


def _reconstructions(out, dest, rows, dataset, explainer, config, log) -> list[Path]:
    plt = _plt()
    cells = [(label, _at(rows, explainer, config, attack, defense)) for attack, defense, label in COLUMNS]
    cells = [(label, row) for label, row in cells if row is not None]
    samples = {label: read_figure_sample(out, row["figure_sample"]) for label, row in cells}
    first = samples[cells[0][0]]
    positions = list(first["positions"])
    fig, axes = plt.subplots(len(positions), 1 + len(cells), figsize=(1.6 * (1 + len(cells)), 1.7 * len(positions)),
                             squeeze=False)
    lines = []
    for i, pos in enumerate(positions):
        axes[i][0].imshow(_image(first["image"][i]), cmap="gray", vmin=0, vmax=1)
        for j, (label, row) in enumerate(cells, start=1):
            sample = samples[label]
            k = list(sample["positions"]).index(pos)
            s = row["ssim_per_image"][int(pos)]
            axes[i][j].imshow(_image(sample["reconstruction"][k]), cmap="gray", vmin=0, vmax=1)
            axes[i][j].set_xlabel(f"SSIM {s:.3f}", fontsize=8)
            lines.append([int(pos), label, row["study"], row["trial"], row["attack_seed"], f"{s:.6f}"])
    for j, label in enumerate(["target"] + [label for label, _ in cells]):
        axes[0][j].set_title(label, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    lam, width, gamma, _, gnime_seed = config
    fig.suptitle(f"{dataset}, {explainer}: reconstructions of test images per defence (GNIME lambda {lam:.6g}, width "
                 f"{width:g}{'' if math.isnan(gamma) else f', gamma {gamma:.3g}'}"
                 f"{f', GNIME seed {gnime_seed}' if gnime_seed else ''})", fontsize=10)
    png = _save(fig, dest / f"reconstructions-{dataset}-{explainer}.png")
    csv = png.with_suffix(".csv")
    _write_csv(csv, ["test_position", "column", "study", "trial", "attack_seed", "ssim"], lines)
    missing = [label for _, _, label in COLUMNS if label not in samples]
    if missing:
        log(f"figures: no rows for {', '.join(missing)} at this configuration; their columns are left out")
    return [png, csv]


def _perturbation(out, dest, rows, dataset, explainer, config) -> list[Path]:
    row = _at(rows, explainer, config, "expmi", "gnime")
    if row is None or not row["perturbation_per_map"]:
        return []
    plt = _plt()
    values = np.asarray(row["perturbation_per_map"], dtype=np.float64)
    sample = read_figure_sample(out, row["figure_sample"])
    kept = [float(values[int(p)]) for p in sample["positions"]]
    common = int(np.argmin([abs(v - float(np.median(values))) for v in kept]))
    extreme = int(np.argmax(kept))
    fig = plt.figure(figsize=(9, 4.2))
    grid = fig.add_gridspec(2, 4, width_ratios=[2.2, 1, 1, 1])
    hist = fig.add_subplot(grid[:, 0])
    hist.hist(values, bins=40, color="#888888")
    for k, colour, name in ((common, "tab:blue", "common: nearest the median"),
                            (extreme, "tab:red", f"extreme: the largest of the {len(kept)} kept")):
        hist.axvline(kept[k], color=colour, linestyle="--", label=f"{name} ({kept[k]:.4f})")
    hist.set_xlabel("perturbation MSE per map")
    hist.set_ylabel("maps")
    hist.legend(fontsize=8)
    for r, (k, name) in enumerate(((common, "common"), (extreme, "extreme"))):
        for c, (key, title) in enumerate((("image", "x"), ("clean_map", "e"), ("released_map", "e_hat")), start=1):
            ax = fig.add_subplot(grid[r, c])
            array = sample[key][k]
            ax.imshow(_image(array) if key == "image" else _map(array), cmap="gray" if key == "image" else "viridis",
                      vmin=0, vmax=1)
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{dataset}, {explainer}: GNIME's perturbation per map ({len(values)} test maps, "
                 f"mean {values.mean():.4f})", fontsize=10)
    png = _save(fig, dest / f"perturbation-{dataset}-{explainer}.png")
    csv = png.with_suffix(".csv")
    marks = {int(sample["positions"][common]): "common", int(sample["positions"][extreme]): "extreme"}
    _write_csv(csv, ["test_position", "perturbation_mse", "marked"],
               [[i, f"{v:.8f}", marks.get(i, "")] for i, v in enumerate(values)])
    return [png, csv]


def _mean_of_finite(values: list) -> float:
    """The mean of the values that are numbers (NaN when none is: no attribute classifier ran)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def _attributes(dest, rows, dataset) -> list[Path]:
    cols = sorted({k for r in rows for k, v in r.items() if k.startswith("f1_") and v is not None and not math.isnan(v)})
    if not cols:
        return []
    plt = _plt()
    by_defense: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        label = "PredMI" if r["attack"] == "predmi" else f"{r['explainer']} {r['defense']}"
        by_defense[label].append(r)
    labels = sorted(by_defense)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(cols) * len(labels) / 2), 3.8))
    width = 0.8 / len(labels)
    lines = []
    for j, label in enumerate(labels):
        means = [_mean_of_finite([r[c] for r in by_defense[label]]) for c in cols]
        ax.bar(np.arange(len(cols)) + j * width, means, width, label=label)
        lines += [[label, c[3:], f"{m:.6f}"] for c, m in zip(cols, means)]
    ax.set_xticks(np.arange(len(cols)) + 0.4 - width / 2)
    ax.set_xticklabels([c[3:] for c in cols], rotation=30, fontsize=8)
    ax.set_ylabel("F1 on reconstructions")
    ax.legend(fontsize=7)
    ax.set_title(f"{dataset}: attributes read off the reconstructions (Fig. 6)", fontsize=10)
    png = _save(fig, dest / f"attributes-{dataset}.png")
    csv = png.with_suffix(".csv")
    _write_csv(csv, ["defence", "attribute", "f1"], lines)
    return [png, csv]


def _by_search(trials: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for t in trials:
        groups[(t["study"], t["explainer"])].append(t)
    return {k: v for k, v in groups.items() if sum(t["status"] == "finished" for t in v) >= 2}


def _search(dest, study, explainer, trials, rows) -> list[Path]:
    """The search's two figures: each finished trial's test numbers (the mean over its own GNIME
    rows), the Pareto flags and the chosen trial as the search determined them (selection images)."""
    plt = _plt()
    done = []
    for t in trials:
        mine = [r for r in rows if r["trial"] == t["trial"] and r["explainer"] == explainer and r["defense"] == "gnime"]
        if t["status"] == "finished" and mine:
            paper_n = all(_finite(r.get("utility_deepsim_paper_n")) for r in mine)  # as the search's utility
            utility = "utility_deepsim_paper_n" if paper_n else "utility_deepsim"
            done.append({**t, "test_attack_ssim": sum(r["ssim"] for r in mine) / len(mine),
                         "test_utility": sum(r[utility] for r in mine) / len(mine)})
    if len(done) < 2:
        return []
    chosen = [t for t in done if t.get("chosen") is True] or [min(done, key=lambda t: t["objective"])]
    best = chosen[0]
    knobs = [k for k in ("lambda", "gamma") if len({t[k] for t in done if t[k] is not None and not math.isnan(t[k])}) > 1]
    fig, axes = plt.subplots(2, max(1, len(knobs)), figsize=(4.2 * max(1, len(knobs)), 6), squeeze=False)
    for c, knob in enumerate(knobs):
        for r, (metric, label) in enumerate((("test_attack_ssim", "attack SSIM, test images (lower: more private)"),
                                             ("test_utility", "utility DeePSiM, test images (higher: more useful)"))):
            ax = axes[r][c]
            ax.scatter([t[knob] for t in done], [t[metric] for t in done], c=["tab:red" if t is best else "tab:blue"
                                                                                  for t in done])
            values = [t[knob] for t in done]
            if max(values) >= 10 * min(values):  # a log axis where the knob spans a decade or more
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(_null_formatter())  # minor labels of a short log axis overlap
            ax.set_xlabel(knob)
            ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"{study}, {explainer}: {len(done)} trials on the test images (red: chosen on the selection images)",
                 fontsize=10)
    png = _save(fig, dest / f"search-{study}-{explainer}.png")
    csv = png.with_suffix(".csv")
    header = ["trial", "lambda", "ng_width", "gamma", "test_attack_ssim", "test_utility", "objective_select",
              "pareto_select", "chosen"]
    _write_csv(csv, header, [[t["trial"], repr(t["lambda"]), t["ng_width"], repr(t["gamma"]), t["test_attack_ssim"],
                              t["test_utility"], t["objective"], t["pareto"], t is best] for t in done])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter([t["test_attack_ssim"] for t in done], [t["test_utility"] for t in done], color="tab:blue",
               label="trials")
    front = sorted((t for t in done if t["pareto"] is True), key=lambda t: t["test_attack_ssim"])
    ax.plot([t["test_attack_ssim"] for t in front], [t["test_utility"] for t in front], color="tab:green", marker="o",
            label="Pareto front (selection images)")
    ax.scatter([best["test_attack_ssim"]], [best["test_utility"]], s=160, facecolors="none", edgecolors="tab:red",
               linewidths=2, label=f"chosen (lambda {best['lambda']:.4g})")
    ax.set_xlabel("attack SSIM, test images (lower: more private)")
    ax.set_ylabel("utility DeePSiM, test images (higher: more useful)")
    ax.legend(fontsize=8)
    ax.set_title(f"{study}, {explainer}: privacy against utility", fontsize=10)
    pareto = _save(fig, dest / f"pareto-{study}-{explainer}.png")
    return [png, csv, pareto]


MARKERS = {("rnd", "perturbation"): ("tab:orange", "o", "none"), ("ond", "perturbation"): ("tab:purple", "s", "none"),
           ("rnd", "utility"): ("tab:orange", "o", "full"), ("ond", "utility"): ("tab:purple", "s", "full"),
           ("rnd", "utility-topk"): ("tab:orange", "^", "full"), ("ond", "utility-topk"): ("tab:purple", "^", "full")}
MATCH_TEXT = {"perturbation": "at GNIME's perturbation", "utility": "at GNIME's utility (DeePSiM)",
              "utility-topk": "at GNIME's utility (top-k)"}


def _frontier(dest, study, dataset, explainer, points) -> list[Path]:
    """The held-out frontier of one explainer (module docstring) and the CSV of what it plots."""
    plt = _plt()
    mine = [p for p in points if p["explainer"] == explainer and p["defense"] in ("gnime", "rnd", "ond")]
    refs = [p for p in points if p["defense"] in ("none", "predmi") and p["explainer"] in (explainer, "none")]
    paper = paper_operating_point(dataset, explainer)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    axis_labels = (("utility_deepsim_paper_n", "utility DeePSiM at the paper's N (higher: more useful)"),
                   ("perturbation_mse", "perturbation MSE of the released maps"))
    for ax, (x, xlabel) in zip(axes, axis_labels):
        gnime = sorted((p for p in mine if p["defense"] == "gnime"), key=lambda p: p[x])
        xs = [p[x] for p in gnime]
        ys = np.array([p["ssim"] for p in gnime])
        spread = np.array([p["ssim_gnime_spread"] for p in gnime])
        ax.plot(xs, ys, color="tab:blue", marker="D", label="GNIME (± GNIME-seed spread)")
        ax.fill_between(xs, ys - spread, ys + spread, color="tab:blue", alpha=0.2)
        for (defense, match), (color, marker, fill) in MARKERS.items():
            line = sorted((p for p in mine if (p["defense"], p["matched_on"]) == (defense, match)), key=lambda p: p[x])
            if line:
                ax.plot([p[x] for p in line], [p["ssim"] for p in line], color=color, marker=marker, fillstyle=fill,
                        linestyle=":", label=f"{defense.upper()} {MATCH_TEXT[match]}")
        for p in refs:
            ax.axhline(p["ssim"], color="grey", linestyle="--" if p["defense"] == "predmi" else "-", linewidth=1,
                       label="PredMI" if p["defense"] == "predmi" else "ExpMI, no defence")
        if paper is not None:
            px = paper["utility_deepsim"] if x == "utility_deepsim_paper_n" else paper["perturbation_mse"]
            ax.scatter([px], [paper["ssim"]], marker="*", s=180, color="tab:red", zorder=5, label="the paper's GNIME")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("attack SSIM, test images (lower: more private)", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=4, fontsize=7.5, frameon=False)
    fig.suptitle(f"{study}: {dataset}, {explainer}, held-out frontier (test images)", fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    png = dest / f"frontier-{study}-{explainer}.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    csv = png.with_suffix(".csv")
    header = ["defense", "matched_on", "lambda", "ng_width", "gamma", "gnime_seeds", "attack_seeds", "ssim",
              "ssim_gnime_spread", "perturbation_mse", "utility_deepsim_paper_n", "utility_topk"]
    lines = [[p[h] for h in header] for p in mine + refs]
    if paper is not None:
        lines.append(["paper_gnime", "", "", "", "", "", "", paper["ssim"], "", paper["perturbation_mse"],
                      paper["utility_deepsim"], ""])
    _write_csv(csv, header, lines)
    return [png, csv]
