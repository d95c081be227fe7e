"""The platform: one folder per domain (``trucks``, ``points``, ``stations``,
``depots``, ``districts``, ``roads``, ``positions``, ``plans``, ``alerts``, ``reports``,
``auth``), each with its ``models``, ``repo`` (the SQL), ``service`` and ``api``;
``config`` (``Settings``), ``db``, ``jobs`` (the job engine), ``web`` (the app and
dashboard), ``cli`` (``clearday``)."""
