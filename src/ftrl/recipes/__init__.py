"""Recipes: the paper's loop (warm start, then rounds of collect, train, evaluate) and its presets, above train and
eval. `ftrl loop` runs `loop.run_loop`; `ftrl demo` is `demo.DemoConfig`, a preset of it with its environment
build and report."""
