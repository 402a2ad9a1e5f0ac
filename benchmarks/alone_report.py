"""What did ``bench_alone`` measure? Per class, each node alone (mean and range over the nodes),
the federation and the pooled baseline on the same test clips; in the skewed case, how each
group of nodes does on the keywords it never heard, alone and federated; the tables and the
picture of both.

A node's figure is its mean over the seeds, and alone is the mean and range of those over the
nodes; the federation's and the pooled baseline's are their mean and range over the seeds. A
set of keywords is scored by the mean of their per-class accuracies
(the test clips are about as many per keyword).
"""

import statistics
from collections.abc import Sequence
from pathlib import Path

from benchmarks.alone_data import never_heard
from whisper_example.plots import figure, save
from whisper_example.runs.comparison import spread

ALL = "all classes"  # the row of test accuracy over every clip


def _score(tested: dict, classes: Sequence[str]) -> float | None:
    """Mean per-class test accuracy over ``classes`` (the test accuracy for ``ALL``)."""
    if list(classes) == [ALL]:
        return tested["accuracy"]
    values = [tested["per-class"][name] for name in classes if tested["per-class"].get(name) is not None]
    return statistics.mean(values) if values else None


def _seed_scores(runs: list[dict], pick, classes: Sequence[str]) -> list[float]:
    return [score for run in runs if (score := _score(pick(run), classes)) is not None]


def _over_seeds(runs: list[dict], pick, classes: Sequence[str]) -> dict | None:
    """One run per seed (the federation's, the pooled): their mean and range."""
    scores = _seed_scores(runs, pick, classes)
    return spread(scores) | {"seeds": len(scores)} if scores else None


def _alone(case: dict, classes: Sequence[str], nodes: Sequence[int]) -> dict | None:
    """Alone over ``nodes``: each node's mean over the seeds, then their spread."""
    per_node = []
    for node in nodes:
        if scores := _seed_scores(case["runs"], lambda run, node=node: run["alone"][str(node)], classes):
            per_node.append(statistics.mean(scores))
    return spread(per_node) | {"nodes": len(per_node)} if per_node else None


def summarise(case: dict, names: Sequence[str], words: Sequence[str], skewed: bool) -> dict:
    """Per class with test clips (and over all): alone, federated, pooled; with ``skewed``, alone
    split by whether the node heard the class, and a row per group of nodes that never heard
    the same keywords."""
    nodes = case["sampled"]
    rows = []
    tested = [name for name in names if case["runs"][0]["pooled"]["per-class"].get(name) is not None]
    for name in [*tested, ALL]:
        classes = [name]
        row = {
            "class": name,
            "federated": _over_seeds(case["runs"], lambda run: run["federated"], classes),
            "pooled": _over_seeds(case["runs"], lambda run: run["pooled"], classes),
        }
        if skewed:  # silence, other words and ALL: every node heard them
            row["alone-heard"] = _alone(case, classes, [n for n in nodes if name not in never_heard(n, words)])
            row["alone-never-heard"] = _alone(case, classes, [n for n in nodes if name in never_heard(n, words)])
        else:
            row["alone"] = _alone(case, classes, nodes)
        rows.append(row)
    groups = []
    for missing in dict.fromkeys(never_heard(node, words) for node in nodes) if skewed else []:
        members = [node for node in nodes if never_heard(node, words) == missing]
        heard = [word for word in words if word not in missing]
        groups.append(
            {
                "never-heard": list(missing),
                "nodes": members,
                "alone-never-heard": _alone(case, missing, members),
                "federated-never-heard": _over_seeds(case["runs"], lambda run: run["federated"], missing),
                "alone-heard": _alone(case, heard, members),
                "federated-heard": _over_seeds(case["runs"], lambda run: run["federated"], heard),
            }
        )
    return {"skewed": skewed, "classes": rows, "groups": groups}


def _cell(value: dict | None) -> str:
    """Mean (min-max): over the nodes for alone, over the seeds for the others (one seed: the figure)."""
    if value is None:
        return "-"
    if value.get("seeds") == 1:
        return f"{value['mean']:.3f}"
    return f"{value['mean']:.3f} ({value['min']:.3f}-{value['max']:.3f})"


def table(summary: dict) -> str:
    """The summary as Markdown tables."""
    if summary["skewed"]:
        lines = [
            "| class | alone, nodes that heard it | alone, nodes that never heard it | federated | pooled |",
            "| --- | --- | --- | ---: | ---: |",
        ]
        for row in summary["classes"]:
            lines.append(
                f"| {row['class']} | {_cell(row['alone-heard'])} | {_cell(row['alone-never-heard'])} | "
                f"{_cell(row['federated'])} | {_cell(row['pooled'])} |"
            )
        lines += [
            "",
            "| nodes | never heard | on those: alone | federated | on the keywords they heard: alone | federated |",
            "| --- | --- | --- | ---: | --- | ---: |",
        ]
        for group in summary["groups"]:
            lines.append(
                f"| {len(group['nodes'])} | {', '.join(group['never-heard'])} | {_cell(group['alone-never-heard'])} | "
                f"{_cell(group['federated-never-heard'])} | {_cell(group['alone-heard'])} | "
                f"{_cell(group['federated-heard'])} |"
            )
        return "\n".join(lines)
    lines = ["| class | alone: mean (min-max over nodes) | federated | pooled |", "| --- | --- | ---: | ---: |"]
    for row in summary["classes"]:
        lines.append(f"| {row['class']} | {_cell(row['alone'])} | {_cell(row['federated'])} | {_cell(row['pooled'])} |")
    return "\n".join(lines)


# How each figure of a class row is drawn: (key, label, marker, colour, offset from the class's place).
MARKS = {
    False: (
        ("alone", "alone: mean and range over the nodes", "o", "0.45", -0.15),
        ("federated", "federated: mean and range over the seeds", "D", "C0", 0.0),
        ("pooled", "pooled: mean and range over the seeds", "s", "black", 0.15),
    ),
    True: (
        ("alone-heard", "alone, nodes that heard it: mean and range", "o", "0.45", -0.24),
        ("alone-never-heard", "alone, nodes that never heard it", "o", "C3", -0.08),
        ("federated", "federated: mean and range over the seeds", "D", "C0", 0.08),
        ("pooled", "pooled: mean and range over the seeds", "s", "black", 0.24),
    ),
}


def draw(summaries: dict[str, dict], titles: dict[str, str], path: Path) -> Path:
    """A panel per case: per class, alone (its mean and range over the nodes; in the skewed case
    apart for the nodes that heard the class and those that never did), federated and pooled
    (their mean and range over the seeds)."""
    drawing = figure(12, 3.8 * len(summaries))
    panels = drawing.subplots(len(summaries), 1, squeeze=False)[:, 0]
    for axes, (case, summary) in zip(panels, summaries.items()):
        rows = summary["classes"]
        for key, label, marker, colour, offset in MARKS[summary["skewed"]]:
            shown = [(index + offset, row[key]) for index, row in enumerate(rows) if row[key] is not None]
            values = [value for _, value in shown]
            means = [value["mean"] for value in values]
            yerr = [[v["mean"] - v["min"] for v in values], [v["max"] - v["mean"] for v in values]]
            xs = [x for x, _ in shown]
            axes.errorbar(xs, means, yerr=yerr, fmt=marker, color=colour, capsize=3, markersize=6, label=label)
        axes.axvline(len(rows) - 1.5, color="0.7", linewidth=0.8)  # the classes, then all of them together
        axes.set_xticks(range(len(rows)), [row["class"] for row in rows], rotation=30, ha="right")
        axes.set_ylim(-0.04, 1.04)
        axes.set_ylabel("test accuracy")
        axes.grid(True, axis="y", alpha=0.3)
        axes.set_title(titles[case], fontsize="medium")
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(drawing, path)
