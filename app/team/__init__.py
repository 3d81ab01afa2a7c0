"""The team stack on one machine: images, PostgreSQL, the MLflow server and the ZenML stack
(``stack``), the main job in it compared with one process (``check``), and the command line of
``scripts/team_stack.sh`` (``cli``)."""
