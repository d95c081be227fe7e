"""The job engine (procrastinate on PostgreSQL): ``engine`` (the app, queues,
priorities, ``WorkerConfig``), ``worker`` (``clearday worker`` and the in-process
worker), ``pieces`` (a large district's pieces solved on every worker, with
``piece_solve`` the process that solves one), ``repo`` (the jobs' SQL)."""
