"""Tensor, expert and pipeline parallelism across processes (docs/engine.md, "Parallelism").

`state`: this process's place in the group and the collectives the layers call;
`degrees`: which degrees a model accepts (pure); `launch`: the rank processes the engine
core spawns and supervises; `follower`: the loop of a rank that is not the scheduler;
`pipeline`: one step through the pipeline stages, micro-batch by micro-batch.
"""
