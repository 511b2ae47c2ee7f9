"""`parley distill`: both routes from one teacher, then all three on the same episodes.

1. Load the teacher's adapters (prefix `teacher_`) and fresh students (`student_`) into
   one engine; the teacher plays `episodes` episodes (seeded as training is).
2. Route one (`training.distill`): the students fit the teacher's distributions; they
   are saved under the teacher's adapter names in OUT/adapters, so
   `parley eval SCENARIO --adapters OUT/adapters` plays them.
3. Route two (`training.described`): the teacher describes its own policy; the base
   model plays with the descriptions in its prompts.
4. Teacher, KL student and described student play the same evaluation episodes.
   OUT/distill.json holds the three evaluations, the KL per epoch, the descriptions,
   the wall time of the distillation and, where the teacher's folder is a training run
   (its metrics.csv), the wall time that training took.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import BaseModel

from agents.llm.adapters import adapter_folders, attach_adapters, load_adapters, save_adapters
from agents.llm.compute import on_torch_thread
from agents.llm.engine import InferenceEngine, run_on
from agents.llm.loading import load_model
from agents.llm.sampling import logits_width
from runtime.scenario import Scenario
from training.described import describe_policies, with_descriptions
from training.distill import fit_students, student_kl, teacher_states
from training.evaluate import EvalSummary, evaluate
from training.progress import status_bar
from training.rollout import collect_rollout
from training.train_scenario import TrainScenario
from training.trainer import scenario_for_training
from training.trajectory import Trajectories, assemble

log = structlog.get_logger()
TEACHER, STUDENT = "teacher_", "student_"
REPORT = "distill.json"
FIGURE = "distill.png"


@dataclass(frozen=True)
class DistillSettings:
    """What `parley distill` was asked for."""

    teacher: Path
    out: Path
    episodes: int = 64
    epochs: int = 4
    minibatch: int = 8
    eval_episodes: int = 200
    eval_seed: int = 10_000
    concurrency: int = 12
    progress: bool = True
    student_model: str | None = None  # another model with the teacher's tokenizer


class DistillReport(BaseModel):
    """OUT/distill.json."""

    student_model: str
    teacher: EvalSummary
    student: EvalSummary
    described: EvalSummary
    kl_before: float
    kl_per_epoch: list[float]
    descriptions: dict[str, str]
    distill_s: float
    describe_s: float
    teacher_training_s: float | None


def teacher_adapters(folder: Path) -> Path:
    """The adapters folder of a teacher: FOLDER/adapters (a training run) or FOLDER itself."""
    for candidate in (folder / "adapters", folder):
        if candidate.is_dir() and adapter_folders(candidate):
            return candidate
    raise FileNotFoundError(f"--teacher {folder}: no adapters in it or in {folder / 'adapters'}")


def training_seconds(folder: Path) -> float | None:
    """What training the teacher took (metrics.csv's wall_s summed), if it was trained there."""
    metrics = folder / "metrics.csv"
    if not metrics.is_file():
        return None
    with metrics.open() as rows:
        return sum(float(row["wall_s"]) for row in csv.DictReader(rows))


@dataclass(frozen=True)
class Players:
    """The teacher's engine (its adapters under `teacher_`), the students' engine (fresh
    adapters under `student_`; the same engine unless another model was asked for), the
    scenario the students play, and the adapters' names (the scenario's LLM agents)."""

    teacher: InferenceEngine
    student: InferenceEngine
    student_scenario: TrainScenario
    names: list[str]


def _players(scenario: TrainScenario, adapters: Path, student_model: str | None) -> Players:
    """Engines of their own (the process-wide one may hold same-named adapters)."""
    names = list(adapter_folders(adapters))
    llm = sorted(name for name, spec in scenario.agents.items() if spec.type == "llm")
    if sorted(names) != llm:
        raise ValueError(f"--teacher: adapters {', '.join(names)} are not the scenario's LLM "
                         f"agents ({', '.join(llm)})")
    config = scenario.training
    teacher = InferenceEngine(*load_model(scenario.model), seed=config.seed)
    teacher.model = load_adapters(teacher.model, adapters, prefix=TEACHER)
    teacher.model.eval()
    student, student_scenario = teacher, scenario
    if student_model is not None:
        student_scenario = scenario.model_copy(update={"model": scenario.model.model_copy(
            update={"name": student_model})})
        student = InferenceEngine(*load_model(student_scenario.model), seed=config.seed)
        if student.tokenizer.get_vocab() != teacher.tokenizer.get_vocab() or logits_width(
                student.model) != logits_width(teacher.model):
            raise ValueError(f"--student-model {student_model}: its tokenizer is not the "
                             "teacher's; distillation compares distributions token by token")
    torch.manual_seed(config.seed)  # LoRA A's initialisation
    student.model = attach_adapters(student.model, [STUDENT + n for n in names],
                                    rank=config.lora_rank, alpha=int(config.lora_alpha),
                                    target_modules=config.lora_targets,
                                    top_layers=config.lora_layers)
    student.model.eval()
    return Players(teacher, student, student_scenario, names)


def _playing(scenario: TrainScenario, prefix: str, names: list[str]) -> TrainScenario:
    """Each LLM agent playing the adapter `prefix` + its name (training's timeouts)."""
    return scenario_for_training(scenario, {name: prefix + name for name in names})


def _save_students(engine: InferenceEngine, names: list[str], out: Path) -> None:
    """OUT/adapters/<name>: each student under its teacher's name."""
    aside = out / ".students"
    shutil.rmtree(aside, ignore_errors=True)
    save_adapters(engine.model, aside, [STUDENT + n for n in names])  # type: ignore[arg-type]
    final = out / "adapters"
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir(parents=True)
    for name in names:
        os.replace(aside / (STUDENT + name), final / name)
    shutil.rmtree(aside)


def _fit(players: Players, scenario: TrainScenario, trajectories: Trajectories,
         settings: DistillSettings) -> tuple[float, list[float]]:
    """Route one: the KL before, then per epoch."""
    states = teacher_states(players.teacher.model, players.teacher.tokenizer,
                            trajectories.decisions,
                            lambda adapter: STUDENT + adapter.removeprefix(TEACHER))
    model = players.student.model
    with torch.no_grad():
        before = float(student_kl(model, states))
    with status_bar(settings.progress, "distil", settings.epochs) as advance:
        history = fit_students(model, states, settings.epochs, settings.minibatch,
                               scenario.training.actor_lr, scenario.training.seed,
                               lambda epoch, kl: advance(f"KL {kl:.3f}"))
    return before, history


def distill(scenario: TrainScenario, settings: DistillSettings) -> DistillReport:
    """Both routes from the teacher in `settings.teacher`; the report is also OUT/distill.json."""
    adapters = teacher_adapters(settings.teacher)
    players = _players(scenario, adapters, settings.student_model)
    names, teacher_engine = players.names, players.teacher
    began = time.perf_counter()  # after loading, as training's metrics.csv counts its wall
    teacher = _playing(scenario, TEACHER, names)
    rollout = run_on(teacher_engine, collect_rollout(
        teacher, teacher_engine, settings.episodes, scenario.training.seed,
        settings.concurrency))
    trajectories = assemble(rollout.envelopes)
    before, history = on_torch_thread(_fit, players, scenario, trajectories, settings)
    _save_students(players.student, names, settings.out)
    distill_s = time.perf_counter() - began
    described = time.perf_counter()
    descriptions = run_on(teacher_engine, describe_policies(
        teacher_engine, trajectories, {n: TEACHER + n for n in names}))
    describe_s = time.perf_counter() - described
    log.info("distilled", kl_before=before, kl_after=history[-1], distill_s=distill_s,
             descriptions=descriptions)

    def judged(playing: Scenario, engine: InferenceEngine) -> EvalSummary:
        return run_on(engine, evaluate(playing, settings.eval_episodes, settings.eval_seed,
                                       concurrency=settings.concurrency, engine=engine))

    pupil = players.student_scenario
    report = DistillReport(
        student_model=pupil.model.name,
        teacher=judged(teacher, teacher_engine),
        student=judged(_playing(pupil, STUDENT, names), players.student),
        described=judged(scenario_for_training(with_descriptions(pupil, descriptions), {}),
                         players.student),
        kl_before=before,
        kl_per_epoch=history, descriptions=descriptions, distill_s=distill_s,
        describe_s=describe_s, teacher_training_s=training_seconds(settings.teacher))
    (settings.out / REPORT).write_text(report.model_dump_json(indent=2) + "\n")
    plot_distill(report, settings.out / FIGURE)
    return report


def plot_distill(report: DistillReport, path: Path) -> None:
    """Two panels: the KL per epoch, and the three players' success with 95% intervals."""
    figure = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(figure)
    kl, success = figure.subplots(1, 2)
    kl.plot(range(len(report.kl_per_epoch) + 1), [report.kl_before, *report.kl_per_epoch],
            marker="o")
    kl.set(title="KL(teacher || student) per decision", xlabel="epoch", ylabel="nats",
           xticks=range(len(report.kl_per_epoch) + 1))
    players = {"teacher": report.teacher, "student (KL)": report.student,
               "student (description)": report.described}
    for x, summary in enumerate(players.values()):
        rate = summary.success_rate or 0.0
        low, high = summary.success_rate_ci95 or [rate, rate]
        success.bar(x, rate)
        success.errorbar(x, rate, yerr=[[rate - low], [high - rate]], color="black", capsize=4)
    success.set_xticks(range(len(players)), list(players), fontsize=8)
    success.set(title="Evaluation success (Wilson 95%)", ylim=(0, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def render_distill(report: DistillReport) -> str:
    """The three evaluations side by side, the KL and the costs."""
    def line(label: str, summary: EvalSummary) -> str:
        rate = summary.success_rate
        interval = summary.success_rate_ci95 or [float("nan")] * 2
        shown = "n/a" if rate is None else f"{rate:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
        return f"  {label:<22} success {shown}"

    scratch = (f"{report.teacher_training_s:.0f} s" if report.teacher_training_s is not None
               else "unknown (the teacher folder has no metrics.csv)")
    lines = [f"  student model: {report.student_model}",
             line("teacher", report.teacher), line("student (KL)", report.student),
             line("student (description)", report.described),
             f"  KL(teacher || student) {report.kl_before:.3f} -> {report.kl_per_epoch[-1]:.3f}"
             f" over {len(report.kl_per_epoch)} epochs",
             f"  distillation {report.distill_s:.0f} s; the teacher's training {scratch}"]
    lines += [f"  {agent} says how it plays: {text}"
              for agent, text in report.descriptions.items()]
    return "\n".join(lines)
