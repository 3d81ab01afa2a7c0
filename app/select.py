"""``run.py select``: the pipeline picks the variant that wins on the team's own validation split,
racing the candidates instead of training all of them, and registers the winner from its own run.

Seed by seed (``dcjt.experiments.racing``): each round runs one pipeline per surviving candidate
that is not a baseline, with the surviving baselines as its baseline rows (trained once per seed,
then served by ZenML's cache to the other candidates' runs; with only baselines left, the first
of them is the run's own row). With ``--strategy race`` the rounds train a rung, a third of each
row's epochs (``budget.rung``), and a candidate stops once its paired deficit to the leader on the
ranking half of validation is below zero beyond the bound; after the last seed the winner (the best
mean on the ranking half) and every baseline go on from their rung's runs at the first seed to the
full budget, in one round of runs that holds every baseline row beside the winner. The winner is
registered from that run (``app.registering``), its promotion compares it with those rows, and
nothing trains after that round. ``exhaustive`` runs every candidate on every
seed at the full budget, and registers from the first seed's runs. The winner's lead over the
runner-up is reported on the other half of validation.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app.registering import register_row
from app.runner import model_line, run_pipeline
from app.select_request import CANDIDATES, RaceSettings, check_request, threads_per_run
from app.study import exploring
from dcjt.config import BASELINES
from dcjt.config_files import load_config
from dcjt.experiments import racing
from dcjt.experiments.records import RunSummary
from dcjt.experiments.tables import Row
from dcjt.registry.lifecycle import PromotionOutcome
from dcjt.selection import SelectionEvidence
from dcjt.utils.markdown import markdown_table


@dataclass
class SelectOutcome:
    evidence: SelectionEvidence
    markdown: str
    csv_path: Path
    promotion: PromotionOutcome
    model_uri: str
    seconds: float

    def model_line(self) -> str:
        return model_line(self.promotion, self.model_uri)


@dataclass(frozen=True)
class Placed:
    """Where a candidate's run at a seed lies: the ZenML run, the row id inside it, and what that
    run was (its own candidate and the baseline rows beside it)."""

    run_name: str
    row: str
    head: str
    shared: tuple[str, ...]


def layout(survivors: list[str]) -> list[tuple[str, list[str]]]:
    """A round's pipeline runs: (the run's own candidate, the baseline ids it reports beside it)."""
    heads = [r for r in survivors if r not in BASELINES] or survivors[:1]
    shared = [r for r in survivors if r in BASELINES and r not in heads]
    return [(head, shared) for head in heads]


def scored(row: str, seed: int, evaluation) -> racing.Scored:
    return racing.Scored(
        row,
        seed,
        np.asarray(evaluation.val.correct),
        np.asarray(evaluation.val.fold),
        evaluation.test.accuracy,
        evaluation.steps or 0,
        evaluation.warmup_steps or 0,
    )


@dataclass(frozen=True)
class Request:
    """What every run of a selection starts from: the config, its ``--set`` overrides and values."""

    config_name: str
    overrides: tuple
    values: dict
    name: str

    def config(self, row: Row, seed: int, baselines: list[str], **extra):
        tags = {"study": self.name, "table": "select", "row": row.name, "row_id": row.id}
        values = {
            **exploring(self.overrides),
            **self.values,
            **row.values,
            "seed": seed,
            "baselines": baselines,
            "register_model": False,
        }
        return load_config(self.config_name, self.overrides, {**values, "tracking_tags": tags, **extra})


def run_elsewhere(config_json: str) -> tuple[str, str]:
    """One pipeline run in a worker process (``--parallel``): its run name and summary (JSON)."""
    from dcjt.config import PipelineConfig

    outcome = run_pipeline(PipelineConfig.model_validate_json(config_json))
    return outcome.run_name, outcome.summary.model_dump_json()


def run_round(
    request: Request,
    rows: dict[str, Row],
    seed: int,
    survivors: list[str],
    progress,
    parallel: int = 1,
    rung: float | None = None,
):
    """Every surviving candidate at ``seed``: (row -> Scored, row -> Placed, pipeline runs). The
    first run trains the seed's shared stages and baseline rows; with ``parallel`` > 1 the others
    then run that many at a time, each in its own process, served those from ZenML's cache.
    ``rung``: the share of each row's epochs to train (``budget.rung``; None: the full budget)."""
    found, placed = {}, {}
    runs = layout(survivors)
    configs = [request.config(rows[head], seed, shared, **{"budget.rung": rung}) for head, shared in runs]
    budget = f", {rung:.0%} of the epochs" if rung else ""
    for head, shared in runs:
        beside = f" (beside {', '.join(shared)})" if shared else ""
        progress(f"select {request.name}: seed {seed}{budget}, {rows[head].name!r}{beside}")
    first = run_pipeline(configs[0])
    done = [(first.run_name, first.summary)]
    if parallel > 1 and len(configs) > 2:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(parallel, mp_context=get_context("spawn")) as pool:
            for name, summary in pool.map(run_elsewhere, [c.model_dump_json() for c in configs[1:]]):
                done.append((name, RunSummary.model_validate_json(summary)))
    else:
        done += [(o.run_name, o.summary) for o in map(run_pipeline, configs[1:])]
    for (head, shared), (run_name, summary) in zip(runs, done):
        for row, in_run in [(head, "dcjt")] + [(b, b) for b in shared]:
            if row not in found:
                found[row] = scored(row, seed, summary.row(in_run))
                placed[row] = Placed(run_name, in_run, head, tuple(shared))
        progress(f"  {rows[head].name!r}: validation {100 * found[head].accuracy(racing.RANK_FOLD):.2f} % (ranking half)")
    return found, placed, len(runs)


def race_table(evidence: SelectionEvidence, dropped: dict[str, racing.Drop], rows: dict[str, Row]) -> pd.DataFrame:
    """One line per candidate: seeds run, validation on both halves, test, steps, why it stopped."""
    lines = []
    for c in evidence.candidates:
        drop = dropped.get(c.row)
        lines.append(
            {
                "candidate": rows[c.row].name,
                "id": c.row,
                "seeds run": len(c.seeds),
                "val % (ranking half)": round(c.val_mean, 2),
                "val % (held-out half)": round(c.heldout_mean, 2),
                "test % (mean)": round(c.test_mean, 2),
                **(
                    {
                        "full budget: val % (held-out half)": None if c.full_heldout is None else round(c.full_heldout, 2),
                        "full budget: test %": None if c.full_test is None else round(c.full_test, 2),
                    }
                    if evidence.rung
                    else {}
                ),
                "steps": c.steps,
                "stopped": f"after seed {drop.seed}: {drop.deficit:+.2f} behind {drop.leader}, bound {drop.bound:+.2f}"
                if drop
                else ("winner" if c.row == evidence.winner else ""),
            }
        )
    return pd.DataFrame(lines)


def run_select(
    config_name: str,
    seeds: list[int],
    *,
    candidates=None,
    race: RaceSettings | None = None,
    overrides=(),
    values=None,
    progress=print,
) -> SelectOutcome:
    """Race (or run every one of) the candidates over ``seeds``, pick the winner on the ranking half
    of validation, register it from its run at the first seed."""
    values, race = dict(values or {}), race or RaceSettings()
    rows = check_request(list(candidates or CANDIDATES), seeds, race)
    import torch

    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    threads = threads_per_run(race.parallel, values.get("runtime.threads"), os.cpu_count() or 1, devices)
    if threads is not None:
        values["runtime.threads"] = threads
    by_id = {r.id: r for r in rows}
    base = load_config(config_name, overrides, values)
    request = Request(config_name, tuple(overrides), values, f"{base.name}-select-{race.strategy}")
    t0 = time.perf_counter()
    evidence: dict[str, list[racing.Scored]] = {r.id: [] for r in rows}
    placed: dict[str, Placed] = {}
    survivors, dropped, runs = [r.id for r in rows], {}, 0
    rung = race.budget_share()
    for k, seed in enumerate(seeds):
        found, where, n = run_round(request, by_id, seed, survivors, progress, race.parallel, rung)
        runs += n
        placed = placed or where  # the first seed: where each candidate can be registered from
        for row, s in found.items():
            evidence[row].append(s)
        if race.strategy == "race" and k < len(seeds) - 1:
            for drop in racing.drops({r: evidence[r] for r in survivors}, alpha=race.alpha):
                dropped[drop.row] = drop
                progress(f"  stopped {drop.row!r}: {drop.deficit:+.2f} points behind {drop.leader!r} (bound {drop.bound:+.2f})")
            survivors = [r for r in survivors if r not in dropped]
    finished = {}
    if rung:  # the finalists go on from their rung's runs at the first seed to the full budget
        finalists = racing.finishing(racing.standing(evidence, survivors, dropped), BASELINES)
        progress(f"select {request.name}: finishing {', '.join(finalists)} at seed {seeds[0]}, the full budget")
        finished, placed, n = run_round(request, by_id, seeds[0], finalists, progress, race.parallel)
        runs += n
    about = dict(study=request.name, seeds=seeds, strategy=race.strategy, rung=rung, registered_seed=seeds[0], runs=runs)
    chosen = racing.choose(evidence, survivors, dropped, finished, **about)
    table = race_table(chosen, dropped, by_id)
    out = Path(base.paths.outputs) / "studies" / request.name
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "select.csv"
    table.to_csv(csv_path, index=False)
    seconds = time.perf_counter() - t0
    how = f" on {rung:.0%} of the epochs, finalists finished at seed {seeds[0]}" if rung else ""
    text = (
        f"### {request.name}: {race.strategy}{how} over seeds {','.join(map(str, seeds))}, {runs} pipeline runs, "
        f"{chosen.steps:,} optimiser steps, {seconds:,.0f} s\n\n{markdown_table(table, index=False)}\n"
    )
    (out / "select.json").write_text(chosen.model_dump_json(indent=1))
    (out / "select.md").write_text(text)
    winner = placed[chosen.winner]
    progress(f"select: {chosen.summary()}; registering it from run {winner.run_name} (seed {seeds[0]})")
    full = {"budget.rung": None, "register_model": True, "selection": chosen.model_dump()}  # as the winner's run was
    cfg = request.config(by_id[winner.head], seeds[0], list(winner.shared), **full)
    promotion = register_row(winner.run_name, winner.row, cfg)
    return SelectOutcome(chosen, text, csv_path, promotion, f"models:/{cfg.model_name}@champion", seconds)
