"""The views of the main window. Each is a passive widget: it draws numbers it is given and
emits signals for what the user asked; it never runs a model (the window's controller does,
off the UI thread)."""
