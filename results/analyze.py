#!/usr/bin/env python3
"""Tables behind results/README.md, computed from the runs' results.csv files.

Usage (from the repository root): python3 results/analyze.py > results/tables.md
Plain Python 3, no packages: every number in results/README.md can be traced here.
"""
import csv
import glob
import gzip
import json
import os
import statistics as st
from collections import defaultdict

ROOT = os.path.dirname(os.path.abspath(__file__))
SETS = ["uniform", "histogram", "normal"]
METHODS = ["uniform-nearest", "uniform-stochastic", "histogram-nearest", "histogram-stochastic",
           "normal-nearest", "normal-stochastic", "midrise"]


# the --bias-correct runs, each named after the run it corrects
BIAS_CORRECT_SUFFIXES = ("-bcmean", "-bcactive")


def within_1pct(value, fp32, higher_is_better):
    """sweep-gpu's rule (src/report/summary.rs): within 1 % of fp32 on the good
    side, a value exactly on the line included (the margin widened by 1e-9)."""
    margin = 0.01 * abs(fp32) * (1 + 1e-9)
    return value >= fp32 - margin if higher_is_better else value <= fp32 + margin


def read_rows(folder):
    """A run's results.csv rows (runs over 2 MB keep it gzipped in git)."""
    plain = os.path.join(ROOT, folder, "results.csv")
    if os.path.exists(plain):
        with open(plain, newline="") as f:
            return list(csv.DictReader(f))
    with gzip.open(plain + ".gz", "rt", newline="") as f:
        return list(csv.DictReader(f))


def runs():
    """The runs of the whole-net tables. The mixed-precision, Lloyd, KDE, level-set,
    clipping, dither and per-channel runs repeat their base run's variants: the
    sections after main() read them."""
    folders = sorted({os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, "*", "results.csv*"))})
    for folder in folders:
        if folder.endswith(("-mixed", "-lloyd", "-kde", "-dither", "-levels", "-layers") + BIAS_CORRECT_SUFFIXES) or "-clip" in folder or "-channel-" in folder:
            continue
        rows = read_rows(folder)
        if rows:
            yield folder, rows


def summary_of(folder):
    """A run's summary.json, its smallest bits within 1 % (whole net, layer
    granularity) and its whole-net settings by (method, bits)."""
    with open(os.path.join(ROOT, folder, "summary.json")) as f:
        s = json.load(f)
    at = {(x["method"], x["bits"]): x for x in s["settings"] if x["scope"] == "all" and x["granularity"] == "layer"}
    return s, s["smallest_bits_within_1pct"].get("layer/all", {}), at


def folders_like(pattern):
    """The run folders in results/ whose name matches `pattern` and that hold a summary.json."""
    return [os.path.basename(os.path.dirname(p)) for p in sorted(glob.glob(os.path.join(ROOT, pattern, "summary.json")))]


def bits_cell(b):
    return str(b) if b is not None else "—"


def better(metric):
    return (lambda a, b: a > b) if metric == "accuracy" else (lambda a, b: a < b)


def better_worse(at, plain, gt, bits):
    """Cells (method x bit width in `bits`, both runs' whole-net means) where `at`
    scores better / worse than `plain` by `gt`, and how many cells there are."""
    keys = [(m, b) for m in METHODS for b in bits if (m, b) in at]
    return sum(gt(at[k]["mean"], plain[k]["mean"]) for k in keys), sum(gt(plain[k]["mean"], at[k]["mean"]) for k in keys), len(keys)


def fmt(v, metric):
    return f"{100 * v:.2f}" if metric == "accuracy" else f"{v:.4g}"


def main():
    all_runs = list(runs())
    print("# Tables computed from results/*/results.csv by results/analyze.py\n")

    print("## Smallest bit width within 1 % (relative) of fp32, whole net quantized\n")
    print("| run | metric | fp32 | " + " | ".join(METHODS) + " |")
    print("|---|---|---|" + "---|" * len(METHODS))
    for folder, rows in all_runs:
        metric = rows[0]["metric"]
        _, sb, _ = summary_of(folder)
        cells = [bits_cell(sb.get(m)) for m in METHODS]
        print(f"| {folder} | {metric} | {fmt(float(rows[0]['fp32_value']), metric)} | " + " | ".join(cells) + " |")

    print("\n## Stochastic against nearest rounding (same level set and bit width, whole net)\n")
    print("Per run, over bit widths 2..8: nearest's metric, the stochastic draws' mean ± std, "
          "the share of draws that beat nearest, and the best draw. Accuracy in %.\n")
    print("| run | level set | bits | nearest | stochastic mean ± std | draws better | best draw |")
    print("|---|---|---|---|---|---|---|")
    totals = defaultdict(lambda: [0, 0, 0])
    for folder, rows in all_runs:
        metric = rows[0]["metric"]
        gt = better(metric)
        scale = 100 if metric == "accuracy" else 1
        for ls in SETS:
            for b in range(1, 17):
                near = [float(r["value"]) for r in rows if r["method"] == f"{ls}-nearest" and int(r["bits"]) == b and r["scope"] == "all" and r["granularity"] == "layer"]
                sto = [float(r["value"]) for r in rows if r["method"] == f"{ls}-stochastic" and int(r["bits"]) == b and r["scope"] == "all" and r["granularity"] == "layer"]
                if not near or not sto:
                    continue
                wins = sum(gt(v, near[0]) for v in sto)
                losses = sum(gt(near[0], v) for v in sto)
                totals[(folder, ls)][0] += wins
                totals[(folder, ls)][1] += losses
                totals[(folder, ls)][2] += len(sto)
                if 2 <= b <= 8:
                    best = max(sto) if metric == "accuracy" else min(sto)
                    sd = st.stdev(sto) * scale if len(sto) > 1 else 0.0
                    print(f"| {folder} | {ls} | {b} | {fmt(near[0], metric)} | {fmt(st.mean(sto), metric)} ± {sd:.3g} | {wins}/{len(sto)} | {fmt(best, metric)} |")
    print("\n### Stochastic draws better / worse than nearest (the rest tie), all bit widths 1..16\n")
    print("| run | " + " | ".join(SETS) + " |")
    print("|---|" + "---|" * len(SETS))
    for folder, _ in all_runs:
        cells = []
        for ls in SETS:
            w, l, n = totals.get((folder, ls), [0, 0, 0])
            cells.append(f"{100 * w / n:.0f} % / {100 * l / n:.0f} %" if n else "—")
        print(f"| {folder} | " + " | ".join(cells) + " |")

    print("\n## Weight error: the normal level set against the others\n")
    print("Mean squared weight error over the quantized tensors (whole net, mean over seeds for the stochastic methods).\n")
    for folder, rows in all_runs:
        metric = rows[0]["metric"]
        print(f"**{folder}**\n")
        print("| bits | " + " | ".join(f"{m} MSE" for m in METHODS) + " | " + " | ".join(f"{m} {metric}" for m in ("uniform-nearest", "normal-nearest", "histogram-nearest")) + " |")
        print("|---|" + "---|" * (len(METHODS) + 3))
        for b in (2, 3, 4, 6, 8):
            cells = []
            for m in METHODS:
                v = [float(r["weight_mse"]) for r in rows if r["method"] == m and int(r["bits"]) == b and r["scope"] == "all" and r["granularity"] == "layer"]
                cells.append(f"{st.mean(v):.3g}" if v else "—")
            for m in ("uniform-nearest", "normal-nearest", "histogram-nearest"):
                v = [float(r["value"]) for r in rows if r["method"] == m and int(r["bits"]) == b and r["scope"] == "all" and r["granularity"] == "layer"]
                cells.append(fmt(v[0], metric) if v else "—")
            print(f"| {b} | " + " | ".join(cells) + " |")
        print()

    print("## Per-layer sensitivity (one layer quantized, the rest fp32), nearest methods\n")
    # the runs above with --scope each-layer, and the *-layers runs that repeat a checkpoint for it
    for folder, rows in all_runs + [(f, read_rows(f)) for f in folders_like("*-layers")]:
        layers = sorted({r["scope"] for r in rows if r["scope"].startswith("layer=")})
        if not layers:
            continue
        metric = rows[0]["metric"]
        fp32 = float(rows[0]["fp32_value"])
        print(f"**{folder}** ({metric}; fp32 {fmt(fp32, metric)}): relative change against fp32 in %, uniform-nearest\n")
        print("| layer | " + " | ".join(f"{b} bits" for b in (1, 2, 3, 4)) + " |")
        print("|---|---|---|---|---|")
        for layer in layers:
            cells = []
            for b in (1, 2, 3, 4):
                v = [float(r["value"]) for r in rows if r["method"] == "uniform-nearest" and int(r["bits"]) == b and r["scope"] == layer and r["granularity"] == "layer"]
                cells.append(f"{100 * (v[0] - fp32) / fp32:+.1f}" if v else "—")
            print(f"| {layer[6:]} | " + " | ".join(cells) + " |")
        print()

    bn = [(f, r) for f, r in all_runs if r[0]["bn"]]
    if bn:
        print("## BatchNorm treatment (conv nets): top-1 accuracy in % by bit width\n")
        bits = sorted({int(r["bits"]) for _, rows in bn for r in rows})
        print("| run | bn | method | fp32 | " + " | ".join(f"{b}" for b in bits) + " |")
        print("|---|---|---|---|" + "---|" * len(bits))
        for folder, rows in bn:
            for m in METHODS:
                cells = []
                for b in bits:
                    v = [float(r["value"]) for r in rows if r["method"] == m and int(r["bits"]) == b and r["scope"] == "all"]
                    cells.append(f"{100 * st.mean(v):.1f}" if v else "—")
                if any(c != "—" for c in cells):
                    print(f"| {folder} | {rows[0]['bn']} | {m} | {100 * float(rows[0]['fp32_value']):.1f} | " + " | ".join(cells) + " |")


def seed_runs():
    """(run, seed, summary.json) for the dense classifiers at seeds 1-8: seed 1 is
    the run in results/<run>/, seeds 2-8 are in results/seeds/<run>-s<seed>/."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "seeds", "*-s*", "summary.json"))):
        folder = os.path.basename(os.path.dirname(path))
        run, seed = folder.rsplit("-s", 1)
        if run.endswith("-mixed") or not seed.isdigit():
            continue  # mixed_section; init_seeds_section
        with open(path) as f:
            out.append((run, int(seed), json.load(f)))
    for run in sorted({r for r, _, _ in out}):
        out.append((run, 1, summary_of(run)[0]))
    return out


def bit_range(bits):
    """Smallest bit widths over seeds (None: none within 1 %) as "min-max (n× —)"."""
    known = [b for b in bits if b is not None]
    if not known:
        return "—"
    none = len(bits) - len(known)
    cell = f"{min(known)}" if min(known) == max(known) else f"{min(known)}-{max(known)}"
    return cell + (f" ({none}× —)" if none else "")


def seeds_section():
    by_run = defaultdict(list)
    for run, seed, s in seed_runs():
        by_run[run].append((seed, s))
    if not by_run:
        return
    print("\n## Across seeds: the dense classifiers at seeds 1-8\n")
    print("`--seed N` moves the split, the training and the rounding seeds. fp32 accuracy in %; "
          "per method, the smallest bit width within 1 % of fp32 (whole net), min-max over the seeds "
          "(\"—\": no bit width stays within 1 %).\n")
    print("| run | seeds | fp32 mean (min-max) | " + " | ".join(METHODS) + " |")
    print("|---|---|---|" + "---|" * len(METHODS))
    for run, items in sorted(by_run.items()):
        items.sort(key=lambda x: x[0])
        fp32 = [100 * s["fp32_value"] for _, s in items]
        cells = [bit_range([s["smallest_bits_within_1pct"].get("layer/all", {}).get(m) for _, s in items]) for m in METHODS]
        seeds = ",".join(str(sd) for sd, _ in items)
        print(f"| {run} | {seeds} | {st.mean(fp32):.2f} ({min(fp32):.2f}-{max(fp32):.2f}) | " + " | ".join(cells) + " |")


def mixed_section():
    found = folders_like("*-mixed")
    if not found:
        return
    print("\n## Mixed precision: layers held at their own width, the others at the bit width\n")
    print("Per method, the smallest bit width of the other layers within 1 % of fp32 (as in the first "
          "table) and the model's size there in bytes (codes, level tables and the f32 biases); "
          "\"—\": no bit width stays within 1 %; blank: the method was not run. `all` is the whole net at that width.\n")
    print("| run | scope | fp32 bytes | " + " | ".join(METHODS) + " |")
    print("|---|---|---|" + "---|" * len(METHODS))
    for folder in found:
        s, _, _ = summary_of(folder)
        size = {(x["scope"], x["method"], x["bits"]): x["size_bytes"] for x in s["settings"] if x["granularity"] == "layer"}
        for key, best in s["smallest_bits_within_1pct"].items():
            granularity, scope = key.split("/", 1)
            if granularity != "layer":
                continue
            # blank: the method was not in the run
            cells = [f"{best[m]} ({size[(scope, m, best[m])]:,} B)" if best.get(m) is not None else ("—" if m in best else "") for m in METHODS]
            print(f"| {folder} | {scope} | {s['fp32_size_bytes']:,} | " + " | ".join(cells) + " |")

    # the classifiers at seeds 1-8: seed 1 above, seeds 2-8 in seeds/<run>-s<seed>/
    by_run = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(ROOT, "seeds", "*-mixed-s*", "summary.json"))):
        run = os.path.basename(os.path.dirname(path)).rsplit("-s", 1)[0]
        with open(path) as f:
            by_run[run].append(json.load(f))
    if not by_run:
        return
    print("\n### Across seeds 1-8\n")
    print("The smallest bit width of the other layers within 1 % of fp32, min-max over the seeds "
          "(\"n× —\": seeds where none stays within 1 %).\n")
    print("| run | scope | seeds | " + " | ".join(METHODS) + " |")
    print("|---|---|---|" + "---|" * len(METHODS))
    for run, summaries in sorted(by_run.items()):
        summaries.append(summary_of(run)[0])
        for key in summaries[-1]["smallest_bits_within_1pct"]:
            cells = [bit_range([x["smallest_bits_within_1pct"][key].get(m) for x in summaries]) for m in METHODS]
            print(f"| {run} | {key.split('/', 1)[1]} | {len(summaries)} | " + " | ".join(cells) + " |")


def lloyd_section():
    found = folders_like("*-lloyd")
    if not found:
        return
    methods = ["uniform-nearest", "lloyd-nearest", "lloyd-stochastic"]
    print("\n## Lloyd-Max levels against the uniform set\n")
    print("Per method, the smallest bit width within 1 % of fp32 and the model's size there in bytes "
          "(a Lloyd model carries its codebook, 4 bytes a level); then the weight MSE of uniform-nearest "
          "over lloyd-nearest's at 1-4 bits (how many times larger the uniform set's error is).\n")
    print("| run | fp32 | fp32 bytes | " + " | ".join(methods) + " | MSE ratio 1 / 2 / 3 / 4 bits |")
    print("|---|---|---|" + "---|" * len(methods) + "---|")
    for folder in found:
        s, best, at = summary_of(folder)
        cells = [f"{best[m]} ({at[(m, best[m])]['size_bytes']:,} B)" if best.get(m) is not None else "—" for m in methods]
        ratios = " / ".join(f"{at[('uniform-nearest', b)]['weight_mse_mean'] / at[('lloyd-nearest', b)]['weight_mse_mean']:.1f}" for b in (1, 2, 3, 4))
        print(f"| {folder} | {fmt(s['fp32_value'], s['metric'])} | {s['fp32_size_bytes']:,} | " + " | ".join(cells) + f" | {ratios} |")


def kde_section():
    found = folders_like("*-kde")
    if not found:
        return
    methods = ["uniform-nearest", "normal-nearest", "kde-nearest", "kde-stochastic"]
    print("\n## Kernel-density levels against the uniform and normal sets\n")
    print("Per method, the smallest bit width within 1 % of fp32 (whole net); then the weight MSE of "
          "uniform-nearest / normal-nearest / kde-nearest at 2, 4 and 8 bits.\n")
    print("| run | fp32 | " + " | ".join(methods) + " | weight MSE 2 bits | 4 bits | 8 bits |")
    print("|---|---|" + "---|" * len(methods) + "---|---|---|")
    for folder in found:
        s, best, at = summary_of(folder)
        cells = [bits_cell(best.get(m)) for m in methods]
        mse = [" / ".join(f"{at[(m, b)]['weight_mse_mean']:.2g}" for m in methods[:3]) for b in (2, 4, 8)]
        print(f"| {folder} | {fmt(s['fp32_value'], s['metric'])} | " + " | ".join(cells) + " | " + " | ".join(mse) + " |")


def levels_section():
    found = folders_like("*-levels")
    if not found:
        return
    print("\n## Level sets on the CNN: uniform, normal, Lloyd-Max and KDE (nearest rounding)\n")
    print("Top-1 accuracy in % by bit width (weight MSE in brackets); the model's bytes at 4 bits.\n")
    for folder in found:
        s, best, at = summary_of(folder)
        bits = sorted({b for _, b in at})
        methods = [m for m in ("uniform-nearest", "normal-nearest", "lloyd-nearest", "kde-nearest") if (m, bits[0]) in at]
        print(f"**{folder}** (fp32 {100 * s['fp32_value']:.1f} %)\n")
        print("| method | smallest bits within 1 % | " + " | ".join(f"{b} bits" for b in bits) + " | bytes at 4 bits |")
        print("|---|---|" + "---|" * len(bits) + "---|")
        for m in methods:
            cells = [f"{100 * at[(m, b)]['mean']:.1f} ({at[(m, b)]['weight_mse_mean']:.2g})" for b in bits]
            size = at[(m, 4)]["size_bytes"] if (m, 4) in at else "—"
            print(f"| {m} | {bits_cell(best.get(m))} | " + " | ".join(cells) + f" | {size:,} |")
        print()


def clip_section():
    # the dither runs under --clip mse have their own table (dither_section)
    # the rescaled runs under --clip mse have their own table (rescale_section)
    # and the bias-corrected ones theirs (bias_correct_section)
    found = [f for f in folders_like("*-clip*") if "-dither-" not in f and not f.endswith(("-gain", "-lsq") + BIAS_CORRECT_SUFFIXES)]
    if not found:
        return
    print("\n## Range clipping (--clip P or mse) against the full range\n")
    print("Per method, the smallest bit width within 1 % of fp32, whole net; then uniform-nearest's "
          "weight MSE at 2 / 3 / 4 bits and its metric at 2 / 3 / 4 bits. The first row of each run "
          "is the full range (the run without --clip). The CNN's grid has only the nearest methods "
          "and bits 2-6 and 8. The weight gain (Σwq/Σw²) is missing (—) from runs written before "
          "results.csv had it.\n")
    print("| run | clip | " + " | ".join(METHODS) + " | uniform-nearest weight MSE 2 / 3 / 4 | uniform-nearest metric 2 / 3 / 4 | its weight gain at 2 bits |")
    print("|---|---|" + "---|" * len(METHODS) + "---|---|---|")
    clip_runs = []
    for base in sorted({f.split("-clip")[0] for f in found}):
        variants = [(f, f.split("-clip")[1]) for f in found if f.split("-clip")[0] == base]
        # the full range is the base run, unless a -clipnone run repeats it with the same grid
        if "none" not in [c for _, c in variants]:
            variants.insert(0, (base, "none"))
        variants.sort(key=lambda v: ["none", "99.9", "99", "mse"].index(v[1]) if v[1] in ("none", "99.9", "99", "mse") else 9)
        clip_runs.append((base, variants))
    for base, variants in clip_runs:
        for folder, clip in variants:
            s, best, at = summary_of(folder)
            cells = [bits_cell(best.get(m)) for m in METHODS]
            mse = " / ".join(f"{at[('uniform-nearest', b)]['weight_mse_mean']:.3g}" for b in (2, 3, 4))
            metric = " / ".join(fmt(at[('uniform-nearest', b)]["mean"], s["metric"]) for b in (2, 3, 4))
            gain = at[("uniform-nearest", 2)].get("weight_gain_mean")
            gain = f"{gain:.3f}" if gain is not None else "—"
            print(f"| {base} | {clip} | " + " | ".join(cells) + f" | {mse} | {metric} | {gain} |")

    print("\nThe other level sets' nearest roundings (under `mse` each on its own range): "
          "metric at 2 / 3 / 4 bits (weight MSE at 2 bits).\n")
    others = ("histogram-nearest", "normal-nearest", "midrise")
    print("| run | clip | " + " | ".join(others) + " |")
    print("|---|---|" + "---|" * len(others))
    for base, variants in clip_runs:
        for folder, clip in variants:
            s, _, at = summary_of(folder)
            cells = []
            for m in others:
                if (m, 2) not in at:
                    cells.append("—")
                    continue
                metric = " / ".join(fmt(at[(m, b)]["mean"], s["metric"]) for b in (2, 3, 4))
                cells.append(f"{metric} ({at[(m, 2)]['weight_mse_mean']:.2g})")
            if any(c != "—" for c in cells):
                print(f"| {base} | {clip} | " + " | ".join(cells) + " |")

    scope_table("*-clip-layers", "uniform-nearest at 2 bits, the whole net and each layer alone (the rest fp32)")
    scope_table("*-clip-where", "uniform-nearest at 2 bits, with the named layers held fp32 (one layer each, "
                "then every layer after the first k)")


def scope_table(pattern, caption):
    """One row per scope, one column per clip (the folders under `pattern`)."""
    found = sorted(glob.glob(os.path.join(ROOT, pattern, "*", "results.csv")))
    if not found:
        return
    print(f"\n{caption}: accuracy % (weight MSE of the quantized part; its weight gain Σwq/Σw² where "
          "results.csv has one).\n")
    runs_ = {os.path.basename(os.path.dirname(p)): read_rows(os.path.relpath(os.path.dirname(p), ROOT)) for p in found}
    scopes = [r["scope"] for r in next(iter(runs_.values()))]
    print("| scope | " + " | ".join(f"clip {c}" for c in runs_) + " |")
    print("|---|" + "---|" * len(runs_))
    for sc in scopes:
        cells = []
        for rows in runs_.values():
            r = next(r for r in rows if r["scope"] == sc)
            gain = f"; gain {float(r['weight_gain']):.3f}" if r.get("weight_gain") else ""
            cells.append(f"{100 * float(r['value']):.1f} ({float(r['weight_mse']):.2g}{gain})")
        name = "held fp32: " + sc[4:].replace("=fp32", "") if sc.startswith("all+") else sc
        print(f"| {name} | " + " | ".join(cells) + " |")


def rescale_section():
    """--rescale gain / lsq against the same clip without it: the dense nets
    under --clip mse, the CNN under each clip."""
    dense = [f[: -len("-clipmse-gain")] for f in folders_like("*-clipmse-gain")]
    cnn = "cnn-fashion-mnist-reduced"
    cnn_found = os.path.isdir(os.path.join(ROOT, cnn + "-rescale"))
    if not dense and not cnn_found:
        return
    print("\n## Rescaling after rounding (--rescale gain or lsq)\n")
    print("Each group's quantized weights times Σw²/Σwq (gain: weight gain 1) or Σwq/Σq² (lsq: least "
          "squares), against the same clip without rescaling. Per method, the smallest bit width within "
          "1 % of fp32 (whole net); then uniform-nearest's metric at 2 / 3 / 4 bits, its weight MSE and "
          "weight gain at 2 bits.\n")
    groups = [(base, "mse", [(f"{base}-clipmse", "none"), (f"{base}-clipmse-gain", "gain"), (f"{base}-clipmse-lsq", "lsq")]) for base in dense]
    if cnn_found:
        for clip in ("none", "99", "mse"):
            groups.append((cnn, clip, [(f"{cnn}-clip{clip}", "none")] + [(f"{cnn}-rescale/clip{clip}-{m}", m) for m in ("gain", "lsq")]))
    # every folder's summary, read once
    summaries = {f: summary_of(f) for _, _, fs in groups for f, _ in fs}
    present = [m for m in METHODS if any(m in best for _, best, _ in summaries.values())]
    print("| run | clip | rescale | " + " | ".join(present) + " | uniform-nearest 2 / 3 / 4 | weight MSE 2 bits | gain 2 bits |")
    print("|---|---|---|" + "---|" * len(present) + "---|---|---|")
    for base, clip, folders in groups:
        for folder, mode in folders:
            s, best, at = summaries[folder]
            cells = [bits_cell(best.get(m)) for m in present]
            metric = " / ".join(fmt(at[("uniform-nearest", b)]["mean"], s["metric"]) for b in (2, 3, 4))
            u2 = at[("uniform-nearest", 2)]
            gain = u2.get("weight_gain_mean")
            gain = f"{gain:.3f}" if gain is not None else "—"
            print(f"| {base} | {clip} | {mode} | " + " | ".join(cells) + f" | {metric} | {u2['weight_mse_mean']:.3g} | {gain} |")

    if dense:
        print("\nDense nets under --clip mse: cells (method x bit width, the mean over seeds for the "
              "stochastic methods) where rescaling scores better / worse than no rescaling (the rest tie).\n")
        print("| run | rescale | 1 bit | 2-4 bits | 5-8 bits |")
        print("|---|---|---|---|---|")
        for base in dense:
            s, _, plain = summaries[f"{base}-clipmse"]
            gt = better(s["metric"])
            for mode in ("gain", "lsq"):
                _, _, at = summaries[f"{base}-clipmse-{mode}"]
                cells = []
                for bits in ((1,), (2, 3, 4), (5, 6, 7, 8)):
                    w, l, n = better_worse(at, plain, gt, bits)
                    cells.append(f"{w} / {l} of {n}")
                print(f"| {base} | {mode} | " + " | ".join(cells) + " |")

    if cnn_found:
        print("\nThe CNN's four nearest roundings at 2 and 3 bits: accuracy % without rescaling / gain / lsq "
              "(weight MSE without / with gain).\n")
        nearest = ("uniform-nearest", "histogram-nearest", "normal-nearest", "midrise")
        print("| clip | bits | " + " | ".join(nearest) + " |")
        print("|---|---|" + "---|" * len(nearest))
        for _, clip, folders in [g for g in groups if g[0] == cnn]:
            ats = [summaries[f][2] for f, _ in folders]
            for b in (2, 3):
                cells = []
                for m in nearest:
                    acc = " / ".join(f"{100 * a[(m, b)]['mean']:.1f}" for a in ats)
                    cells.append(f"{acc} ({ats[0][(m, b)]['weight_mse_mean']:.2g} / {ats[1][(m, b)]['weight_mse_mean']:.2g})")
                print(f"| {clip} | {b} | " + " | ".join(cells) + " |")


def bias_correct_section():
    """--bias-correct mean / active against the same run without it."""
    bases = sorted(f[: -len("-bcmean")] for f in folders_like("*-bcmean") if os.path.isdir(os.path.join(ROOT, f[: -len("-bcmean")])))
    if not bases:
        return
    print("\n## Bias correction after rounding (--bias-correct mean or active)\n")
    print("Each quantized layer's f32 bias plus Σ(w - q)·μ per output, μ the layer's mean input over the "
          "training split (mean), or over the training rows where that output passes its ReLU (active), "
          "against the same run without it. Per method, the smallest bit width within 1 % of fp32 (whole "
          "net); then uniform-nearest's metric at 2 / 3 / 4 bits; then the cells (method x bit width, the "
          "mean over seeds for the stochastic methods) where the correction scores better / worse than "
          "none (the rest tie).\n")
    summaries = {f: summary_of(f) for b in bases for f in (b, b + "-bcmean", b + "-bcactive")}
    present = [m for m in METHODS if any(m in best for _, best, _ in summaries.values())]
    spans = ((1,), (2, 3, 4), (5, 6, 7, 8), tuple(range(9, 17)))
    print("| run | correction | " + " | ".join(present) + " | uniform-nearest 2 / 3 / 4 | better / worse: 1 bit | 2-4 bits | 5-8 bits | 9-16 bits |")
    print("|---|---|" + "---|" * len(present) + "---|---|---|---|---|")
    for base in bases:
        s, _, plain = summaries[base]
        gt = better(s["metric"])
        for folder, mode in ((base, "none"), (base + "-bcmean", "mean"), (base + "-bcactive", "active")):
            _, best, at = summaries[folder]
            cells = [bits_cell(best.get(m)) for m in present]
            metric = " / ".join(fmt(at[("uniform-nearest", b)]["mean"], s["metric"]) for b in (2, 3, 4))
            counts = ["" if mode == "none" else "{} / {}".format(*better_worse(at, plain, gt, bits)[:2]) for bits in spans]
            print(f"| {base} | {mode} | " + " | ".join(cells) + f" | {metric} | " + " | ".join(counts) + " |")

    cnn = "cnn-fashion-mnist-reduced"
    corrected = f"{cnn}-bias-correct"
    if not os.path.isdir(os.path.join(ROOT, corrected)):
        return
    print("\nThe reduced CNN (BatchNorm folded unless kept; calibration on its first 1,024 training images): accuracy % "
          "of the four nearest roundings at 2 / 3 / 4 bits, and the smallest bit width within 1 % of fp32, "
          "against the same clip without correction (and, under mse, with the gain restored).\n")
    nearest = ("uniform-nearest", "histogram-nearest", "normal-nearest", "midrise")
    print("| clip | rescale | correction | " + " | ".join(nearest) + " |")
    print("|---|---|---|" + "---|" * len(nearest))
    rows = [(clip, "none", mode, f"{corrected}/clip{clip}-bc{mode}" if mode != "none" else f"{cnn}-clip{clip}") for clip in ("none", "99", "mse") for mode in ("none", "mean", "active")]
    rows += [("mse", "gain", "none", f"{cnn}-rescale/clipmse-gain"), ("mse", "gain", "active", f"{corrected}/clipmse-gain-bcactive")]
    # BatchNorm kept f32: uniform-nearest only (cnn-fmnist-clip-keep's grid)
    rows += [(f"{clip}, BatchNorm kept", "none", mode, folder) for clip in ("none", "mse")
             for mode, folder in (("none", f"{cnn}-bn-keep-clip{clip}"), ("active", f"{corrected}/bn-keep-clip{clip}-bcactive"))]
    for clip, rescale, mode, folder in rows:
        if not os.path.isfile(os.path.join(ROOT, folder, "summary.json")):
            continue
        _, best, at = summary_of(folder)
        cells = [" / ".join(f"{100 * at[(m, b)]['mean']:.1f}" for b in (2, 3, 4)) + f" ({bits_cell(best.get(m))})" if (m, 2) in at else "" for m in nearest]
        print(f"| {clip} | {rescale} | {mode} | " + " | ".join(cells) + " |")


def resnet9_clip_section():
    """ResNet9 on Fashion-MNIST (BatchNorm folded), uniform-nearest: clipping,
    and under --clip mse the gain restored or the biases corrected."""
    base = "resnet9-fashion-mnist-reduced-bn-fold"
    order = ["clip99", "clip99-bcactive", "clipmse", "clipmse-gain", "clipmse-bcactive"]
    found = folders_like("resnet9-fashion-mnist-reduced-clip/*")
    clipped = [f"resnet9-fashion-mnist-reduced-clip/{f}" for f in sorted(found, key=lambda f: (order.index(f) if f in order else len(order), f))]
    if not clipped or not os.path.isdir(os.path.join(ROOT, base)):
        return
    print("\n## ResNet9 (Fashion-MNIST, reduced, BatchNorm folded): clipping, rescaling, bias correction\n")
    print("uniform-nearest, top-1 accuracy in % by bit width; the smallest bit width within 1 % of fp32 "
          "over bits 1-8; the weight gain Σwq/Σw² over the whole net at 2 bits.\n")
    bits = list(range(1, 9))
    print("| run | " + " | ".join(str(b) for b in bits) + " | within 1 % | gain 2 bits |")
    print("|---|" + "---|" * len(bits) + "---|---|")
    for folder in [base] + clipped:
        s, _, at = summary_of(folder)
        fp32 = s["fp32_value"]
        cells = [f"{100 * at[('uniform-nearest', b)]['mean']:.1f}" for b in bits]
        # within 1 % from b on, over this table's bit widths (the base run also swept 10-16)
        within = next((b for b in bits if all(within_1pct(at[("uniform-nearest", c)]["mean"], fp32, True) for c in bits if c >= b)), None)
        gain = at[("uniform-nearest", 2)].get("weight_gain_mean")
        name = "no clip" if folder == base else folder.rsplit("/", 1)[1]
        print(f"| {name} | " + " | ".join(cells) + f" | {bits_cell(within)} | " + (f"{gain:.3f}" if gain is not None else "—") + " |")


def channel_section():
    found = folders_like("*-channel-bn-*")
    if not found:
        return
    print("\n## One group per output channel under each BatchNorm treatment (conv nets)\n")
    print("Top-1 accuracy in % by bit width: the per-layer rows are the runs of the BatchNorm "
          "table above (the same checkpoint), the per-channel rows `--granularity channel`.\n")
    bits = list(range(1, 9))
    print("| net | bn | method | granularity | " + " | ".join(f"{b}" for b in bits) + " |")
    print("|---|---|---|---|" + "---|" * len(bits))
    for folder in found:
        net, bn = folder.rsplit("-channel-bn-", 1)
        # the per-layer run of the same checkpoint: <net>-bn-<bn>, or <net> itself for fold (the default)
        base = next((b for b in (f"{net}-bn-{bn}", net if bn == "fold" else None) if b and os.path.isdir(os.path.join(ROOT, b))), None)
        with open(os.path.join(ROOT, folder, "summary.json")) as f:
            ch = {(x["method"], x["bits"]): x for x in json.load(f)["settings"] if x["scope"] == "all" and x["granularity"] == "channel"}
        layer = summary_of(base)[2] if base else {}
        for m in sorted({m for m, _ in ch}, key=METHODS.index):
            for gran, at in (("layer", layer), ("channel", ch)):
                cells = [f"{100 * at[(m, b)]['mean']:.1f}" if (m, b) in at else "—" for b in bits]
                print(f"| {net} | {bn} | {m} | {gran} | " + " | ".join(cells) + " |")


def dither_section():
    found = folders_like("*-dither") + folders_like("*-dither-clipmse")
    if not found:
        return
    methods = ["uniform-nearest", "uniform-stochastic", "uniform-dither", "uniform-dither-subtractive"]
    print("\n## Triangular dither against nearest and stochastic rounding (uniform set)\n")
    print("Per method: the smallest bit width within 1 % of fp32; the mean metric over seeds at 2 / 3 / 4 bits; "
          "the weight MSE at 2 bits over uniform-nearest's; and over the grid's bits (1-16 for the dense nets, "
          "2-6 and 8 for the CNN), the share of draws better / worse than uniform-nearest at the same bits "
          "(the rest tie). Accuracy in %.\n")
    print("| run | method | smallest bits | mean 2 / 3 / 4 bits | weight MSE / nearest's (2 bits) | draws better / worse |")
    print("|---|---|---|---|---|---|")
    for folder in found:
        rows = read_rows(folder)
        metric = rows[0]["metric"]
        gt = better(metric)
        s, best, at = summary_of(folder)
        near = {int(r["bits"]): float(r["value"]) for r in rows if r["method"] == "uniform-nearest"}
        for m in methods:
            means = " / ".join(fmt(at[(m, b)]["mean"], metric) for b in (2, 3, 4))
            ratio = at[(m, 2)]["weight_mse_mean"] / at[("uniform-nearest", 2)]["weight_mse_mean"]
            draws = [(int(r["bits"]), float(r["value"])) for r in rows if r["method"] == m]
            if m == "uniform-nearest":
                share = "—"
            else:
                w = sum(gt(v, near[b]) for b, v in draws)
                l = sum(gt(near[b], v) for b, v in draws)
                share = f"{100 * w / len(draws):.0f} % / {100 * l / len(draws):.0f} %"
            print(f"| {folder} | {m} | {bits_cell(best.get(m))} | {means} | {ratio:.2f} | {share} |")


def init_seeds_section():
    found = folders_like(os.path.join("seeds", "*-init*"))
    if not found:
        return
    found.sort(key=lambda f: int(f.split("-init")[1]))
    runs_ = []
    for folder in found:
        with open(os.path.join(ROOT, "seeds", folder, "config.json")) as f:
            c = json.load(f)
        runs_.append((c["config"].get("init_seed", c["config"]["seed"]), c["training_summary"]["valid_metric"], summary_of(os.path.join("seeds", folder))[0]["fp32_value"]))
    name = found[0].split("-init")[0]
    test = [t for _, _, t in runs_]
    mean = sum(test) / len(test)
    sd = (sum((t - mean) ** 2 for t in test) / (len(test) - 1)) ** 0.5
    best = max(runs_, key=lambda r: (r[1], -r[0]))
    print(f"\n## {name}: one split (seed 1), {len(runs_)} initial states (--init-seed)\n")
    print(f"fp32 test accuracy: mean {100 * mean:.2f} %, sd {100 * sd:.2f} points, range {100 * min(test):.2f}-{100 * max(test):.2f} %, "
          f"{sum(t >= 0.857 for t in test)} of {len(test)} at 85.7 % or more. "
          f"The best validation accuracy ({100 * best[1]:.2f} %, init seed {best[0]}) picks {100 * best[2]:.2f} % on test.\n")
    print("| init seed | validation | test |")
    print("|---|---|---|")
    for k, v, t in runs_:
        print(f"| {k} | {100 * v:.2f} % | {100 * t:.2f} % |")


def restarts_section():
    # fp32 by (restarts, seed), each summary read once
    fp32 = {}
    for folder in folders_like(os.path.join("seeds", "mlp-simple-telescope-restarts*-seed*")):
        r, seed = folder.split("-restarts")[1].split("-seed")
        fp32[(int(r), int(seed))] = summary_of(os.path.join("seeds", folder))[0]["fp32_value"]
    seeds = sorted(s for r, s in fp32 if r == 1 and (4, s) in fp32)
    if not seeds:
        return
    one = [fp32[(1, s)] for s in seeds]
    four = [fp32[(4, s)] for s in seeds]
    mean = lambda v: sum(v) / len(v)
    print(f"\n## mlp-simple-telescope: one training against the best of four on validation (--restarts 4), seeds {seeds[0]}-{seeds[-1]}\n")
    print(f"fp32 test accuracy: one training {100 * mean(one):.2f} % ({100 * min(one):.2f}-{100 * max(one):.2f} %, "
          f"{sum(v >= 0.857 for v in one)} of {len(seeds)} at 85.7 % or more); best of four {100 * mean(four):.2f} % "
          f"({100 * min(four):.2f}-{100 * max(four):.2f} %, {sum(v >= 0.857 for v in four)} of {len(seeds)}); "
          f"the best of four is higher at {sum(b > a for a, b in zip(one, four))} seeds and lower at {sum(b < a for a, b in zip(one, four))}.\n")
    print("| seed | one training | best of four |")
    print("|---|---|---|")
    for s, a, b in zip(seeds, one, four):
        print(f"| {s} | {100 * a:.2f} % | {100 * b:.2f} % |")

def qat_section():
    """--qat METHOD:BITS runs (results/<base>-qat/<method>-<bits>/) against their base run."""
    bases = sorted(f[: -len("-qat")] for f in (os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*-qat")))
                   if os.path.isdir(os.path.join(ROOT, f[: -len("-qat")])))
    if not bases:
        return
    print("\n## Quantization-aware training (--qat METHOD:BITS) against post-training quantization\n")
    print("The base run's net fine-tuned (--qat-epochs, Adam at a tenth of the training's learning rate; the "
          "second table gives each run's) with its "
          "weights quantized by the target in every forward pass, then swept again. fp32: the net's unquantized "
          "test metric. Then each method's metric at 1 / 2 / 3 / 4 / 8 bits (mean over seeds for the stochastic "
          "ones), and the smallest bit width from which the method stays within 1 % of the base run's fp32.\n")
    shown = ("uniform-nearest", "midrise", "histogram-nearest", "uniform-stochastic")
    print("| run | trained for | fp32 | " + " | ".join(f"{m} 1 / 2 / 3 / 4 / 8" for m in shown) + " | " + " | ".join(f"{m} within 1 % of base" for m in shown) + " |")
    print("|---|---|---|" + "---|" * (2 * len(shown)))
    for base in bases:
        s0, _, _ = summary_of(base)
        metric, ref = s0["metric"], s0["fp32_value"]
        gt = better(metric)
        within = lambda v: within_1pct(v, ref, metric == "accuracy")
        targets = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, base + "-qat", "*", "summary.json")))
        targets.sort(key=lambda t: (t.rsplit("-", 1)[0], int(t.rsplit("-", 1)[1])))
        for folder, label in [(base, "none (post-training)")] + [(os.path.join(base + "-qat", t), t.rsplit("-", 1)[0] + ":" + t.rsplit("-", 1)[1]) for t in targets]:
            s, _, at = summary_of(folder)
            cells = [" / ".join(fmt(at[(m, b)]["mean"], metric) if (m, b) in at else "—" for b in (1, 2, 3, 4, 8)) for m in shown]
            firsts = []
            for m in shown:
                ok = [b for b in range(1, 17) if (m, b) in at and all(within(at[(m, c)]["mean"]) for c in range(b, 17) if (m, c) in at)]
                firsts.append(bits_cell(min(ok) if ok else None))
            print(f"| {base} | {label} | {fmt(s['fp32_value'], metric)} | " + " | ".join(cells) + " | " + " | ".join(firsts) + " |")

    print("\nThe variant each fine-tuning trained for, on the test split: the base run's score of it (post-training), "
          "the QAT start's own score of it before fine-tuning (config.json's qat_start: the same net, so the same "
          "number when the start is the base run's checkpoint), and the fine-tuned net's; then the fp32 metric of the base run, the start and the fine-tuned net. Epochs: the fine-tuning's, and when the kept "
          "weights were taken (best quantized validation score; 0 is the start).\n")
    print("| run | trained for | epochs (kept at) | base, post-training | QAT start | fine-tuned | base fp32 | start fp32 | fine-tuned fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for base in bases:
        s0, _, at0 = summary_of(base)
        metric = s0["metric"]
        # <base>-qat and its longer fine-tunings (<base>-qat10: --qat-epochs 10), each target's side by side
        runs = []
        for t in glob.glob(os.path.join(ROOT, base + "-qat*", "*", "config.json")):
            with open(t) as f:
                runs.append((t, json.load(f)))
        runs.sort(key=lambda r: (r[1]["training"]["qat"]["method"], r[1]["training"]["qat"]["bits"], r[1]["training"]["epochs"]))
        for t, c in runs:
            folder = os.path.relpath(os.path.dirname(t), ROOT)
            q = c["training"]["qat"]
            s, _, at = summary_of(folder)
            key = (q["method"], q["bits"])
            cell = lambda a: fmt(a[key]["mean"], metric) if key in a else "—"
            how = q["granularity"] + (f", --clip {q['clip']}" if q.get("clip") is not None else "")
            print(f"| {base} | {q['method']}:{q['bits']} ({how}) | {c['training']['epochs']} ({c['training_summary']['best_epoch']:.2f}) "
                  f"| {cell(at0)} | {fmt(c['qat_start']['quantized_value'], metric)} | {cell(at)} "
                  f"| {fmt(s0['fp32_value'], metric)} | {fmt(c['qat_start']['fp32_value'], metric)} | {fmt(s['fp32_value'], metric)} |")


if __name__ == "__main__":
    main()
    seeds_section()
    mixed_section()
    lloyd_section()
    kde_section()
    levels_section()
    clip_section()
    rescale_section()
    bias_correct_section()
    channel_section()
    resnet9_clip_section()
    dither_section()
    init_seeds_section()
    restarts_section()
    qat_section()
