"""The embedded demo dataset: real compositions rendered to audio, simulated listeners.

:func:`build_demo_dataset` renders excerpts of scores from the music21 corpus through a
General MIDI soundfont and simulates listeners with a documented generative model (see
:mod:`musicrec.data.demo.listeners`). ``musicrec demo-data`` is its command line.
"""

from musicrec.data.demo.build import CATALOG_COLUMNS, DemoDataset, build_demo_dataset
from musicrec.data.demo.listeners import ListenerModel, Simulation, simulate_listeners

__all__ = [
    "CATALOG_COLUMNS",
    "DemoDataset",
    "ListenerModel",
    "Simulation",
    "build_demo_dataset",
    "simulate_listeners",
]
