"""``edge-ad batch``: re-score many recordings with one exported model, on a local process pool or Ray.

  plan.py        SOURCE arguments -> jobs (globs, @list.txt, unique output names), what is already done
  worker.py      the worker's side: load the Scorer once, score one source with ``run_capture`` (the
                 same code and seed as ``edge-ad run``), pack/unpack the model directory
  local.py       the engine without Ray: a process pool (a dead worker's sources are retried)
  ray_engine.py  the engine with Ray: one actor per worker, the model shipped through the object store
  driver.py      runs the jobs on an engine: progress over all frames, results files, summary.json

Results: ``OUTDIR/<name>.jsonl`` per source (written as ``<name>.jsonl.partial`` and renamed once the
source is complete, so a rerun never mistakes a partial file for a finished one) and
``OUTDIR/summary.json``.
"""
