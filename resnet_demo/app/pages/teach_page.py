"""Teach page: a class's own classes, taught to a network from a few photos each, in seconds.

Name 2 to 6 classes, give each a few images (files, several at once, or the camera, one shot at a time), and
Train: a network that already knows CIFAR-10 (or one with random weights) is fine-tuned, every layer, on the
images with random crops and flips; a fifth of each class's images is held out and the network is scored on those
(accuracy and confusion matrix). Compare teaches both starts on the same images, side by side. The taught model
then appears in every page's model picker of this tab; the work can be saved as one project file and opened
again. Everything here is the tab's own (app/lesson.py); fine-tunes wait their turn in the server's one queue
(app/finetunes.py).
"""
from __future__ import annotations

import streamlit as st

from resnet_demo.data.images import THUMB_SIDE, ImageError, load_small

from .. import finetunes, lesson, teach_panels, teacher, uploads
from ..plain import plain

KEY = "teach.lesson"  # session_state: this tab's Lesson
PER_ROW = 10  # thumbnails in a row
MAX_FILES = 30  # images in one upload (the bytes a tab may hold at once are capped as on Predict)


def current() -> lesson.Lesson:
    """This tab's lesson (a new one, with two empty classes, on the first visit)."""
    if KEY not in st.session_state:
        st.session_state[KEY] = lesson.Lesson()
    return st.session_state[KEY]


def render() -> None:
    st.title("Teach")
    st.caption("Teach a network classes of your own: name them, give each a few photos, and train. It starts from "
               "a network that already knows CIFAR-10, so a minute of photos is enough.")
    work = current()
    teach_panels.project_panel(work, KEY)
    _access_line()
    st.subheader("1. Classes and examples")
    for number, group in enumerate(work.groups, start=1):
        _group_panel(work, group, number)
    st.button("Add a class", icon=":material/add:", key="teach_add_class", on_click=work.add_group,
              disabled=len(work.groups) >= lesson.MAX_CLASSES,
              help=f"{lesson.MIN_CLASSES} to {lesson.MAX_CLASSES} classes.")
    st.subheader("2. Teach")
    teach_panels.teach_panel(work)


def _access_line() -> None:
    """Who may train here, and the teacher's switch."""
    if not teacher.password_set():
        return
    open_now = finetunes.students_may_teach()
    if teacher.can_control():
        st.session_state["teach_students"] = open_now
        st.toggle("Students may teach", key="teach_students", on_change=_switch,
                  help="Off: only a tab with the teacher controls unlocked can train or compare here (the whole "
                       "server, at once). Students can still add images and use models taught before.")
    elif not open_now:
        st.info(finetunes.LOCKED, icon=":material/lock:")


def _switch() -> None:
    finetunes.set_students_may_teach(bool(st.session_state.get("teach_students")))


# ------------------------------------------------------------------ one class


def _group_panel(work: lesson.Lesson, group: lesson.Group, number: int) -> None:
    with st.container(border=True):
        head = st.columns([2.2, 2, 0.9], vertical_alignment="bottom")
        key = f"teach_name_{group.id}"
        if key not in st.session_state:
            st.session_state[key] = group.name
        group.name = head[0].text_input(f"Class {number}", key=key, max_chars=40,
                                        placeholder="a name, e.g. cup", help="What the network will call it.")
        head[1].markdown(_count_line(len(group.examples)))
        head[2].button("Remove", key=f"teach_remove_{group.id}", icon=":material/delete:",
                       on_click=work.remove_group, args=(group.id,), width="stretch",
                       disabled=len(work.groups) <= lesson.MIN_CLASSES,
                       help=f"Remove this class and its images (at least {lesson.MIN_CLASSES} classes).")
        for note in st.session_state.pop(f"teach_notes_{group.id}", []):
            st.warning(note, icon=":material/info:")
        files, camera = st.tabs(["From files", "From the camera"])
        with files:
            _file_adder(work, group)
        with camera:
            _camera_adder(work, group)
        _thumbnails(work, group)


def _count_line(n: int) -> str:
    if n < lesson.MIN_PER_CLASS:
        return f"**{n}** image{'s' if n != 1 else ''} · :orange[needs at least {lesson.MIN_PER_CLASS}]"
    if n < lesson.GOOD_PER_CLASS:
        return f"**{n}** images · :blue[enough to train; {lesson.GOOD_PER_CLASS} or more teach it better]"
    return f"**{n}** images · :green[:material/check: plenty]"


def _round(name: str) -> str:
    """A widget key that changes each time its files have been taken in, so the next upload starts empty."""
    return f"{name}_{st.session_state.get(name + '_round', 0)}"


def _next_round(name: str) -> None:
    st.session_state[name + "_round"] = st.session_state.get(name + "_round", 0) + 1


def _file_adder(work: lesson.Lesson, group: lesson.Group) -> None:
    name = f"teach_files_{group.id}"
    files = st.file_uploader("Add images", accept_multiple_files=True, key=_round(name),
                             help=f"Several at once (up to {MAX_FILES}): any format Pillow reads, any size. Each is "
                                  f"centre-cropped to a square and shrunk to 32x32 pixels, all the network sees.")
    if files:
        _take_in(work, group, [(f.getvalue(), f.name) for f in files], files, name)


def _camera_adder(work: lesson.Lesson, group: lesson.Group) -> None:
    on = st.toggle("Turn the camera on", key=f"teach_camera_on_{group.id}",
                   help="Off by default so the browser asks for the camera only when you want it.")
    if not on:
        return
    name = f"teach_camera_{group.id}"
    shot = st.camera_input("Each picture you take is added to this class", key=_round(name))
    if shot is not None:
        _take_in(work, group, [(shot.getvalue(), "the camera picture")], [shot], name)


def _take_in(work: lesson.Lesson, group: lesson.Group, items: list[tuple[bytes, str]], files: list,
             name: str) -> None:
    """Decode, keep the small copies, let go of the files, and start the widget afresh."""
    refused = uploads.refusal(files, MAX_FILES)
    notes = [refused] if refused else [n for n in (_one(work, group, data, label) for data, label in items) if n]
    uploads.release(f.file_id for f in files)
    _next_round(name)
    if notes:
        st.session_state[f"teach_notes_{group.id}"] = notes
    st.rerun()


def _one(work: lesson.Lesson, group: lesson.Group, data: bytes, label: str) -> str | None:
    try:
        small, thumb = load_small(data, label, thumb_side=THUMB_SIDE)
    except ImageError as e:
        return plain(str(e))
    return work.add(group.id, small, thumb, plain(label))


def _thumbnails(work: lesson.Lesson, group: lesson.Group) -> None:
    examples = group.examples
    for start in range(0, len(examples), PER_ROW):
        cols = st.columns(PER_ROW, gap="small")
        for col, example in zip(cols, examples[start:start + PER_ROW], strict=False):
            col.image(example.thumb, width="stretch")
            col.button("", key=f"teach_del_{example.id}", icon=":material/close:", width="stretch",
                       on_click=work.remove, args=(group.id, example.id), help="Remove this image")
