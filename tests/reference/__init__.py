"""Reference formulations the tests and benchmarks check the package against: written the
straightforward way (as the authors' TensorFlow code, or the paper's procedure one scalar at a
time), slow, and of no use to someone running capsviewer, so they do not ship in the package.

Tests import them as ``reference.…`` (tests/ is on the path under pytest); benchmarks add
tests/ to ``sys.path`` first."""
