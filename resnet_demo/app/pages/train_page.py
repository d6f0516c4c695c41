"""Train page: start one background training job, watch it live from any tab, stop/resume it, compare runs.

The job runs in its own process (resnet_demo.server.jobs); this page only reads its files, so it never blocks:
a fragment polls the event file every second while a job runs (every few seconds otherwise, to notice a
job started from another tab).
"""
from __future__ import annotations

import time

import streamlit as st
import torch

from resnet_demo.data.cifar import candidate_dirs, find_cifar10
from resnet_demo.data.download import DownloadError, download_cifar10, offline_help
from resnet_demo.nets.model import Arch
from resnet_demo.nets.paper import FIG6_CORE, FIG6_NOTE
from resnet_demo.server import jobs
from resnet_demo.store.events import current_phase
from resnet_demo.store.events import epochs as epoch_rows
from resnet_demo.store.registry import ModelEntry, at_chance_level, finished_runs, model_label, with_history
from resnet_demo.store.weights import WeightsError
from resnet_demo.training import sources
from resnet_demo.training.config import TrainConfig
from resnet_demo.training.recipes import RECIPES

from .. import live, pickers, teacher
from ..charts import curves
from ..charts.style import CONFIG

FULL_TRAIN, FULL_TEST = 50_000, 10_000
FORCE_AFTER_S = 15  # offer "force stop" when a stop request has not been honoured this long


def render() -> None:
    st.title("Train a ResNet")
    st.caption("One training job runs at a time on this server. Everyone who opens this page sees it live. "
               "Finished runs appear on every page as models (unless they learned nothing beyond chance).")
    teacher.notice()
    left, right = st.columns([1, 2], gap="large")
    with left:
        _settings_panel()
    with right:
        _live_panel()
    st.divider()
    _compare_section()


# ------------------------------------------------------------------ settings + Start


def _settings_panel() -> None:
    st.subheader("Settings")
    running = live.poller().active() is not None
    arch = pickers.arch_picker("train", explain=True)
    preset = st.selectbox("Preset", list(RECIPES), index=list(RECIPES).index("classroom"), key="train_preset")
    st.caption(RECIPES[preset].description)
    cuda = torch.cuda.is_available()
    devices = ["cuda", "cpu"] if cuda else ["cpu"]
    device = st.selectbox("Device", devices, key="train_device",
                          format_func=lambda d: f"CUDA GPU ({torch.cuda.get_device_name(0)})" if d == "cuda" else "CPU")
    settings, data = _run_settings(arch, preset, device)
    problem = None
    if arch is not None:
        try:
            settings.validate()
        except ValueError as e:
            problem = str(e)
            st.error(problem)
    if arch is not None and problem is None:
        problem = teacher.fit(settings)
    _start_button(settings, disabled=running or arch is None or problem is not None or not teacher.can_control()
                  or data.kind == sources.MISSING, running=running)


def _run_settings(arch: Arch | None, preset: str, device: str) -> tuple[TrainConfig, sources.Plan]:
    """The length, data and batch fields, the run they describe (the depth of a refused arch is a stand-in), and
    which data it would train on."""
    on_gpu, recipe = device == "cuda", RECIPES[preset]
    depth = arch.depth if arch is not None else 20
    by_depth = f"_{recipe.epochs_for(depth=depth)}" if recipe.epochs_by_depth else ""  # table6: a depth's own default
    epochs_key = f"train_epochs_{preset}{by_depth}"
    batch_key = f"train_batch_{preset}"
    subset = _training_images(device, int(st.session_state.get(batch_key, recipe.batch_size)), on_gpu,
                              epochs_key if recipe.same_work else None)
    epochs = int(st.number_input("Epochs", min_value=1, max_value=1000,
                                 value=min(1000, recipe.epochs_for(depth=depth, train_images=subset)),
                                 key=epochs_key, help="The schedule stretches to fit."))
    data = sources.plan(None, preset, None if subset >= FULL_TRAIN else subset)
    _data_notice(data)
    final_test = (f"all {data.test_images:,} built-in test images" if data.kind == sources.BUILTIN
                  else "all 10,000 test images")
    with st.expander("Advanced"):
        test_subset = int(st.number_input("Test images per epoch", min_value=10, max_value=FULL_TEST,
                                          value=FULL_TEST if on_gpu else 2000, step=500,
                                          key=f"train_test_subset_{device}",
                                          help="For the per-epoch test curve only; the final accuracy always "
                                               f"uses {final_test}."))
        batch = int(st.number_input("Batch size", min_value=8, max_value=4096, value=recipe.batch_size,
                                    step=32, key=batch_key, help="The learning rate scales linearly with it."))
        seed = int(st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="train_seed"))
    st.caption(f"{max(1, subset // batch) * epochs:,} training steps ({max(1, subset // batch):,} per epoch).")
    arch = arch or Arch()
    return TrainConfig(
        depth=arch.depth, plain=arch.plain, shortcut=arch.shortcut, preset=preset, epochs=epochs,
        subset=None if subset >= FULL_TRAIN else subset, test_subset=None if test_subset >= FULL_TEST else test_subset,
        batch_size=None if batch == recipe.batch_size else batch, device=device, seed=seed), data


def _training_images(device: str, batch: int, on_gpu: bool, epochs_key: str | None) -> int:
    """The Training images field, never below one batch (a run trains on whole batches). Its lower bound follows
    the batch size; the number typed is kept, raised to one batch if the batch outgrew it. With `epochs_key` (a
    preset that keeps the number of steps), a new number resets the Epochs field to the preset's length for it."""
    key = f"train_subset_{device}"
    typed = st.session_state.get(key, FULL_TRAIN if on_gpu and find_cifar10() is not None else 5000)
    same_steps = (" The classroom preset trains for the same number of steps whatever the number: more epochs on "
                  f"fewer images, up to {RECIPES['classroom'].most_epochs}." if epochs_key else "")
    return int(st.number_input("Training images", min_value=batch, max_value=FULL_TRAIN, value=max(batch, typed),
                               step=1000, key=key,
                               on_change=(lambda: st.session_state.pop(epochs_key, None)) if epochs_key else None,
                               help=f"A stratified subset trains faster; 50,000 is the whole set. At least one batch "
                                    f"({batch:,} images).{same_steps}"))


def _data_notice(data: sources.Plan) -> None:
    """Before Start: which data the run will use, and a way to get the full set when it is absent."""
    if data.kind == sources.FULL:
        return
    (st.info if data.kind == sources.BUILTIN else st.warning)(data.message)
    if st.button("Download the full CIFAR-10 (170 MB)", icon=":material/download:", key="train_download",
                 disabled=live.poller().active() is not None or not teacher.can_control(),
                 help=teacher.locked_help()):
        _download()


def _download() -> None:
    """The Download button's action: the full CIFAR-10 into the first folder the server looks in."""
    if not teacher.may_act("downloading CIFAR-10"):
        return
    dest = candidate_dirs()[0]
    bar = st.progress(0.0, text="Downloading CIFAR-10…")

    def progress(done: int, total: int | None) -> None:
        text = f"Downloading CIFAR-10: {done / 1e6:.0f}" + (f" of {total / 1e6:.0f} MB" if total else " MB")
        bar.progress(min(1.0, done / total) if total else 0.0, text=text)

    try:
        download_cifar10(dest, progress)
    except DownloadError as e:
        bar.empty()
        st.error(f"The download failed: {e} {offline_help(dest)}")
    else:
        st.rerun()


def _start_button(settings: TrainConfig, disabled: bool, running: bool) -> None:
    clicked = st.button("Start training", type="primary", icon=":material/play_arrow:", key="train_start",
                        disabled=disabled, width="stretch",
                        help=teacher.locked_help("A job is running; stop it first." if running else None))
    if running:
        st.caption("A training job is running (see the right); stop it there to start another.")
    if clicked:
        run_id = teacher.start(settings)
        if run_id is not None:
            st.session_state["train_run"] = run_id
            st.rerun()


# ------------------------------------------------------------------ live view of the job


def _live_panel() -> None:
    active = live.poller().active()
    st.session_state["train_seen_active"] = active["run_id"] if active else None
    st.fragment(run_every=1.0 if active else 5.0)(_job_view)()


def _shown_run() -> jobs.RunStatus | None:
    """The running job; else the run this session last watched; else the newest run."""
    now = live.poller().current()
    if now is not None:
        st.session_state["train_run"] = now.run_id
        return now
    wanted = st.session_state.get("train_run")
    if wanted and (jobs.runs_path() / wanted).is_dir():
        return live.poller().status(wanted)
    runs = live.poller().list_runs()
    return runs[0] if runs else None


def _job_view() -> None:
    run = _shown_run()
    seen = st.session_state.get("train_seen_active")
    if (run.run_id if run is not None and run.active else None) != seen:
        st.rerun()  # a job started or ended (maybe in another tab): refresh buttons and lists
    if run is None:
        st.subheader("No training run yet")
        st.info("Choose the settings on the left and press **Start training**. With the *classroom* preset and "
                "5,000 images a ResNet-20 learns visibly within minutes on a laptop CPU.")
        return
    _job_header(run)
    _job_charts(run)


STATE_BADGE = {"starting": ("blue", "starting"), "running": ("green", "running"), "stopping": ("orange", "stopping"),
               "completed": ("green", "finished"), "stopped": ("gray", "stopped"), "failed": ("red", "failed")}


def _job_header(run: jobs.RunStatus) -> None:
    color, word = STATE_BADGE.get(run.state, ("gray", run.state))
    st.subheader(f"{run.label} :{color}-badge[{word}]")
    start, end_epoch = run.last("start"), run.last("epoch")
    precision = (start or {}).get("config", {}).get("precision_used")
    st.caption(f"Run `{run.run_id}`" + (f" · {start['device']} · {start['train_images']:,} training images · "
                                        f"batch {start['batch_size']}" if start else "")
               + (f" · {precision}" if precision else ""))
    if run.active:
        st.progress(run.progress, text=_progress_text(run, start))
        _stop_buttons(run)
    else:
        _outcome(run, start)
    if end_epoch is not None:
        c = st.columns(4)
        c[0].metric("Epoch", f"{end_epoch['epoch']}")
        c[1].metric("Train accuracy", f"{100 * end_epoch['train_acc']:.1f}%")
        tested = end_epoch.get("test_acc") is not None  # a run may evaluate every N epochs only (--eval-every)
        c[2].metric("Test accuracy", f"{100 * end_epoch['test_acc']:.1f}%" if tested else "not evaluated")
        c[3].metric("Elapsed", _duration(end_epoch["elapsed_s"]))


def _progress_text(run: jobs.RunStatus, start: dict | None) -> str:
    step = run.last("step")
    if run.state == "starting" or step is None or start is None:
        return "loading the data and building the model…"
    phase = current_phase(run.events)
    if phase is not None and phase.get("phase") == "final_evaluation":  # the last step is done; no ETA of 0 s
        return (f"all {phase['step']:,} steps done · final evaluation on {phase['test_images']:,} test images… "
                "(the model appears on every page when it ends)")
    eta = step.get("eta_s")
    return (f"step {step['step']:,}/{step.get('total_steps', start['total_steps']):,} · epoch "
            f"{step['epoch']:.1f}/{start['epochs']} · {step['images_per_s']:.0f} images/s · "
            f"ETA {_duration(eta) if eta is not None else '…'}")


def _stop_buttons(run: jobs.RunStatus) -> None:
    cols = st.columns(2)
    if run.state == "stopping":
        cols[0].info("Stopping after this step (a checkpoint is saved)…")
        stopped_at = _stop_time(run)
        if stopped_at is not None and time.time() - stopped_at > FORCE_AFTER_S:
            cols[1].button("Force stop", key="train_force", icon=":material/cancel:",
                           on_click=teacher.stop, kwargs={"force": True}, disabled=not teacher.can_control(),
                           help=teacher.locked_help("Interrupts the trainer; the last saved checkpoint is kept."))
    else:
        cols[0].button("Stop", key="train_stop", icon=":material/stop:", width="stretch", on_click=teacher.stop,
                       disabled=not teacher.can_control(), help=teacher.locked_help(
                           "Stops after the current step and saves a checkpoint you can resume from."))


def _outcome(run: jobs.RunStatus, start: dict | None) -> None:
    """How a run that is no longer running ended, and Resume where it can go on."""
    if run.state == "completed":
        end = run.last("end") or {}
        acc, n = end.get("test_accuracy"), end.get("test_images")
        on = f"{n:,} {'built-in ' if end.get('data') == 'builtin' else ''}test images" if n else "all test images"
        if acc is None:
            st.success(run.message)
        elif at_chance_level(acc):
            st.warning(f"Finished: test accuracy {100 * acc:.2f}% on {on}, no better than guessing "
                       "one of the ten classes, so it is not offered as a model on the other pages. Train for more "
                       "steps (more epochs or more images) to get a model worth a look.")
        else:
            st.success(f"Finished: test accuracy {100 * acc:.2f}% on {on}. The model is now listed on "
                       "every page.")
    elif run.state == "stopped":
        end, total = run.last("end") or {}, (start or {}).get("total_steps")
        where = f"step {end['step']:,} of {total:,} ({100 * run.progress:.0f}%)" if "step" in end and total else ""
        st.info(f"Stopped{' at ' + where if where else ''}. "
                + ("The checkpoint is kept: resume below whenever you like." if run.resumable else run.message))
    else:
        st.error(f"Training failed: {run.message}")
    busy = live.poller().active() is not None
    if run.resumable and st.button("Resume from the checkpoint", key="train_resume", icon=":material/resume:",
                                   disabled=busy or not teacher.can_control(), help=teacher.locked_help()):
        if teacher.resume(run.run_id):
            st.rerun()
    if run.restartable and st.button(
            "Start again with the same settings", key="train_restart", icon=":material/restart_alt:",
            disabled=busy or not teacher.can_control(),
            help=teacher.locked_help("It ended before its first checkpoint, so there is nothing to resume: this "
                                     "trains it again from the start, in the same run.")):
        if teacher.restart(run.run_id):
            st.rerun()


def _stop_time(run: jobs.RunStatus) -> float | None:
    try:
        return (run.path / jobs.STOP_FILE).stat().st_mtime
    except OSError:
        return None


def _job_charts(run: jobs.RunStatus) -> None:
    if run.last("step") is None:
        return
    loss, accuracy, lr = live.figures(run)  # built once per server for each new record, shared by every tab
    a, b = st.columns(2)
    a.plotly_chart(loss, key="train_chart_loss", config=CONFIG)
    if accuracy is not None:
        b.plotly_chart(accuracy, key="train_chart_acc", config=CONFIG)
    else:
        b.caption("Train and test accuracy appear after the first epoch.")
    st.plotly_chart(lr, key="train_chart_lr", config=CONFIG)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


# ------------------------------------------------------------------ comparing runs (Fig. 6)


def _comparable() -> list[ModelEntry]:
    entries: list[ModelEntry] = []
    for source in (with_history, finished_runs):
        try:
            entries += [e for e in source() if e.history is not None and e.history.is_file()]
        except WeightsError as e:
            st.warning(str(e))
    return entries


def _compare_section() -> None:
    st.subheader("Compare runs")
    st.caption("Overlay the error curves of shipped models and finished runs — e.g. plain-20, plain-56, ResNet-20 "
               "and ResNet-56 reproduce the paper's Fig. 6: training error dashed, test error solid. " + FIG6_NOTE)
    entries = _comparable()
    if not entries:
        st.info("No finished run or shipped model with a training history yet.")
        return
    by_name = {e.name: e for e in entries}
    fig6 = [n for n in FIG6_CORE if n in by_name]
    default = fig6 or [e.name for e in entries[:4]]
    chosen = st.multiselect("Runs", list(by_name), default=default, key="train_compare",
                            format_func=lambda n: model_label(by_name[n], recipe=True))
    if not chosen:
        return
    short = {n: by_name[n].label.split(" · ")[0] for n in chosen}
    clash = {lab for lab in short.values() if list(short.values()).count(lab) > 1}
    histories = [(f"{short[n]} ({n.removeprefix('run:')})" if short[n] in clash else short[n],
                  by_name[n].load_history()) for n in chosen]
    empty = [label for label, h in histories if not epoch_rows(h)]
    st.plotly_chart(curves.error_figure([h for h in histories if epoch_rows(h[1])]), key="train_chart_compare",
                    config=CONFIG)
    if empty:
        st.caption("No per-epoch records in: " + ", ".join(empty))
    st.caption("Train error is the running value over each epoch on augmented batches; test error is measured "
               "after each epoch. Runs of different lengths share the epoch axis.")
