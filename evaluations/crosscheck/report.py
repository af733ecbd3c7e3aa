"""Text and Markdown renderings of a cross-check report, with findings derived from its rows."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..tables import markdown_table

VERDICT = {True: "ok", False: "FAIL", None: "skip"}

# How each DeepFool differs by design (read from the libraries' sources; the rows measure the consequences).
DEEPFOOL_CONVENTIONS = [
    ("inhouse", "given label y", "y + top-(10-1) by clean logits", "total x (1+overshoot), tested every step", "50"),
    ("foolbox", "clean prediction", "top-10 by clean logits", "total x (1+overshoot), tested every step", "50"),
    ("art", "clean prediction", "nb_grads=10 (all of 10)", "once, after its loop", "50 (default 100)"),
    ("torchattacks", "given label y", "all classes", "every step x (1+overshoot), iterate clipped per step", "50"),
]  # fmt: skip


def _seconds(row: dict[str, Any]) -> str:
    return " / ".join(f"{v:.2f}" for v in row["seconds"].values())


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table: one line per attack x library pair."""
    lines = [
        f"stochdef crosscheck on {report['device_name']} ({report['device']}), "
        f"{'quick' if report['quick'] else 'full'}, {report['seconds']:.0f} s",
        f"{'model':<18} {'attack':<19} {'library':<20} {'n':>4} {'verdict':<7} {'s (ours / lib)':<14} value",
    ]
    for row in report["rows"]:
        lines.append(
            f"{row['model']:<18} {row['attack']:<19} {row['library']:<20} {row['n']:>4} "
            f"{VERDICT[row['passed']]:<7} {_seconds(row):<14} {row['value']}"
        )
        if row["note"] and row["passed"] is not True:
            lines.append(f"{'':<18} note: {row['note']}")
    lines.append(
        f"{len(report['rows'])} comparisons: {report['failed']} failed, {report['skipped']} skipped -> "
        f"{'PASS' if report['passed'] else 'FAIL'}"
    )
    return "\n".join(lines)


def findings(report: dict[str, Any]) -> list[str]:
    """The parity facts, as measured by this run."""
    rows = report["rows"]
    out = []
    exact: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "exact" and r["passed"] is not None:
            exact[(r["attack"], r["library"])].append(r["details"]["max_abs_diff"])
    for (attack, lib), diffs in sorted(exact.items()):
        worst = max(diffs)
        state = "bit-identical" if worst == 0 else f"differs by at most {worst:.2g}"
        out.append(f"{attack} vs {lib}: {state} on {len(diffs)} deterministic model(s).")
    if any(lib == "art" and max(d) == 0 for (_, lib), d in exact.items()):
        out.append(
            "ART clips to the box before it projects onto the eps-ball (Foolbox and torchattacks project, then "
            "clip); for L-inf both are clamps onto intervals containing x0 and the rows above show the same "
            "points (for L2 they do not commute: see the pgd-l2 rows)."
        )
    for r in rows:
        if r["kind"] == "deepfool" and r["passed"] is not None:
            d = r["details"]
            out.append(
                f"{r['attack']} on {r['model']} vs {r['library']}: success {d['success_inhouse']}/{r['n']} in-house vs "
                f"{d['success_library']}/{r['n']}; where both succeed, norm ratio median {d['ratio_median']:.4f} "
                f"(worst {d['ratio_worst']:.4f})" + (f"; {r['note']}" if r["note"] else "") + "."
            )
        if r["kind"] == "l2" and r["passed"] is not None:
            out.append(f"{r['attack']} on {r['model']} vs {r['library']}: {r['value']} ({r['note']}).")
        if r["kind"] == "randomized" and "weaker" in r["details"]:
            out.append(f"{r['attack']} on {r['model']} via {r['library']}: {r['value']}; {r['note']}.")
        if r["kind"] in ("localsearch", "minimal") and r["passed"] is not None:
            out.append(f"{r['attack']} on {r['model']} vs {r['library']}: {r['value']} ({r['note']}).")
        if r["kind"] in ("localsearch", "randomized") and r["passed"] is None:
            out.append(f"{r['attack']} on {r['model']} vs {r['library']}: skipped ({r['note']}).")
    agree: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "randomized" and r["passed"] is not None:
            verdict = (
                "diagnosed" if "weaker" in r["details"] and r["passed"] else ("overlap" if r["passed"] else "fail")
            )
            agree[f"{r['attack']} via {r['library']}"].append(verdict)
    for key, verdicts in sorted(agree.items()):
        text = (
            f"randomized models, {key}: robust accuracy agrees with in-house (overlapping "
            f"{int(report['confidence'] * 100)}% Wilson intervals) on {verdicts.count('overlap')}/{len(verdicts)} "
            "model(s)"
        )
        if verdicts.count("diagnosed"):
            text += f"; weaker than in-house by design (diagnosed above) on {verdicts.count('diagnosed')}"
        out.append(text + ".")
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: environment, models, the table, the DeepFool conventions, findings."""
    lines = [
        "# stochdef cross-check",
        "",
        f"`{report['command']}` on **{report['device_name']}** ({report['device']}): "
        f"{'PASS' if report['passed'] else 'FAIL'} ({report['failed']} failed, {report['skipped']} skipped) "
        f"in {report['seconds']:.0f} s.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        f"Seeds: {report['seeds']}. Sizes: {report['sizes']}.",
        "",
        "## Models (trained within the run)",
        "",
    ]
    lines += markdown_table(
        ["model", "dataset", "randomized", "held-out accuracy", "train s", "attacks s"],
        [
            [
                m["name"],
                m["dataset"],
                m["randomized"],
                f"{m['held_out_accuracy']:.4f}",
                m["train_seconds"],
                m.get("attack_seconds", ""),
            ]
            for m in report["models"]
        ],
    )
    lines += ["", "## Comparisons", ""]
    lines += markdown_table(
        ["model", "attack", "library", "n", "verdict", "metric", "value", "seconds (in-house / library)", "note"],
        [
            [r["model"], r["attack"], r["library"], r["n"], VERDICT[r["passed"]], r["metric"], r["value"]]
            + [_seconds(r), r["note"]]
            for r in report["rows"]
        ],
    )
    lines += ["", "## DeepFool conventions", ""]
    lines += markdown_table(
        ["implementation", "reference class", "candidates", "overshoot", "steps"], DEEPFOOL_CONVENTIONS
    )
    lines += ["", "## Findings (measured by this run)", ""]
    lines += [f"- {f}" for f in findings(report)]
    return "\n".join(lines) + "\n"
