"""The window's menus as a table of actions: where each one sits, what it says, what it does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

Key = QKeySequence.StandardKey


@dataclass(frozen=True)
class Action:
    menu: str  # "&File", or a submenu: "&File/Sample i&mages"
    text: str
    run: Callable  # run(window)
    shortcut: str | QKeySequence.StandardKey | None = None
    tip: str | None = None
    group: str | None = None  # checkable, one of a group checked
    checked: Callable | None = None  # checked(window) → bool, for a group member
    needs_start: bool = False  # uses the models' side: disabled until the window has started


def window_actions(w) -> list[Action]:
    """The menus of MainWindow ``w`` (some entries are listed from what is installed); the
    devices are added once the window has started (:func:`device_actions`)."""
    from capsviewer.app import dialogs, theme
    from capsviewer.data import DATASET_TITLES, DATASETS
    from capsviewer.resources import resource_path

    actions = [
        Action("&File", "&Open model…", dialogs.open_model, Key.Open,
               "Load a CapsNet or CNN checkpoint (.safetensors)", needs_start=True),
        Action("&File", "Open &image…", lambda w: w.input_view.choose_file(), "Ctrl+I",
               "Classify a digit from an image file"),
        *[Action("&File/Sample i&mages", path.stem.replace("-", " "),
                 lambda w, p=path: w.input_view.request_file(p))
          for path in sorted(resource_path("samples").glob("*.png"))],
        Action("&File", "&Download the full test set", lambda w: w.session.download_test_set(),
               tip="Download this dataset's test set (never its training set) into the data folder",
               needs_start=True),
        Action("&File", "Choose data &folder…", dialogs.choose_data_root,
               tip="A folder holding MNIST in torchvision's layout (MNIST/raw)", needs_start=True),
        Action("&File", "-", None),
        Action("&File", "&Save CapsNet as…", lambda w: dialogs.save_model(w, "capsnet"),
               needs_start=True),
        Action("&File", "Save CN&N as…", lambda w: dialogs.save_model(w, "cnn"), needs_start=True),
        Action("&File", "-", None),
        Action("&File", "&Export current view…", lambda w: dialogs.export(w, current=True), "Ctrl+E",
               "PNG (and SVG) of the view, its numbers as CSV, written in the background",
               needs_start=True),
        Action("&File", "Export &all views…", lambda w: dialogs.export(w, current=False),
               "Ctrl+Shift+E", needs_start=True),
        Action("&File", "Export routing a&nimation (GIF)…", dialogs.export_animation,
               tip="Every routing iteration of the Routing tab as an animated GIF, written in "
                   "the background", needs_start=True),
        Action("&File", "-", None),
        Action("&File", "&Quit", lambda w: w.close(), Key.Quit),
        Action("&Navigate", "&Next image", lambda w: w.input_view.next_image(), "Alt+Right"),
        Action("&Navigate", "&Previous image", lambda w: w.input_view.previous_image(), "Alt+Left"),
        Action("&Navigate", "&Random image", lambda w: w.input_view.random_image(), "Ctrl+R"),
        Action("&Navigate", "-", None),
        Action("&Navigate", "Next routing &iteration",
               lambda w: w.on_routing_tab().next_iteration(), "]", needs_start=True),
        Action("&Navigate", "Previous routing i&teration",
               lambda w: w.on_routing_tab().previous_iteration(), "[", needs_start=True),
        Action("&Navigate", "&Play routing", lambda w: w.on_routing_tab().toggle_play(),
               "Ctrl+Space", needs_start=True),
    ]
    for index in range(w.tabs.count()):
        actions.append(Action("&View", w.tabs.tabText(index),
                              lambda w, i=index: w.tabs.setCurrentIndex(i), f"Ctrl+{index + 1}"))
    actions.append(Action("&View", "-", None))
    for name in theme.THEMES:
        actions.append(Action("&View/&Theme", name.capitalize(), lambda w, n=name: w.set_theme(n),
                              group="theme",
                              checked=lambda w, n=name: w.settings.value("theme", "system") == n))
    actions.append(Action("&Model", "&Shipped models", lambda w: w.use_shipped_models(), None,
                          "Load the CapsNet, CNN and EM model that come with capsviewer again",
                          needs_start=True))
    for name in DATASETS:
        actions.append(Action("&Model/Data&set", DATASET_TITLES.get(name, name),
                              lambda w, n=name: w.set_dataset(n),
                              tip="Its test set, its class names and the models found for it",
                              group="dataset", checked=lambda w, n=name: w.dataset == n,
                              needs_start=True))
    actions += [
        Action("&Help", "&Tour", lambda w: w.start_tour(),
               tip="A few steps over the views: what a capsule is, how routing works",
               needs_start=True),
        Action("&Help", "&Formulas", dialogs.formulas, Key.HelpContents),
        Action("&Help", "&About capsviewer", dialogs.about),
    ]
    return actions


def device_actions(w) -> list[Action]:
    """Model ▸ Device: auto, cpu and each GPU torch sees (listed once torch is loaded)."""
    from capsviewer.training.devices import device_choices

    return [Action("&Model/&Device", name, lambda w, n=name: w.set_device(n), group="device",
                   checked=lambda w, n=name: n == "auto") for name in device_choices()]


def build_menus(window: QMainWindow, actions: list[Action],
                menus: dict[str, QMenu] | None = None) -> dict[str, QAction]:
    """Menus, submenus and action groups from ``actions`` (added to ``menus``, by path, when
    given); returns the actions by "menu/text" (tests and the window look them up). Those that
    need the window started are disabled until it has."""
    menus = {} if menus is None else menus
    groups: dict[str, QActionGroup] = {}
    built: dict[str, QAction] = {}

    def menu(path: str) -> QMenu:
        if path not in menus:
            parent, _, title = path.rpartition("/")
            menus[path] = (menu(parent).addMenu(title) if parent
                           else window.menuBar().addMenu(title))
        return menus[path]

    for action in actions:
        if action.text == "-":
            menu(action.menu).addSeparator()
            continue
        q = QAction(action.text, window)
        if action.shortcut:
            q.setShortcut(QKeySequence(action.shortcut))
        if action.tip:
            q.setStatusTip(action.tip)
            q.setToolTip(action.tip)
        if action.group:
            q.setCheckable(True)
            q.setChecked(bool(action.checked(window)))
            groups.setdefault(action.group, QActionGroup(window)).addAction(q)
        if action.needs_start and not window.is_started:
            q.setEnabled(False)
        q.triggered.connect(lambda _=False, run=action.run: run(window))
        menu(action.menu).addAction(q)
        built[f"{action.menu}/{action.text}"] = q
    return built
