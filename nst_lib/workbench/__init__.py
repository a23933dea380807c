"""The workbench: what researchers and students touch, built on the engine (and, for the papers' experiments,
the generative models).

    viz          labelled image grids, loss and training curves, PNG/PDF export
    sweeps       grids of StyleConfig variations, each cell a run folder; sweep spec files (nst sweep)
    ray_executor sweep cells as Ray tasks on a local Ray or a cluster (the optional ray extra)
    widgets      the ipywidgets panel (α/β sliders, Run/Stop/Export)
    survey       the blind deception survey (seed 002)
    experiments  the papers' experiments and measurements as functions, so notebooks only call and plot
    notebook     what every notebook's first cells need (QUICK mode, figure folders)
    patterns     seed 001's honeycomb and mandala style images
    cli          the ``nst`` command
"""
