"""A district's plans: ``service`` (plan, store, publish, re-plan a day), ``jobs``
(planning as engine jobs), ``solve_job`` (the process that solves one), ``progress``
(how far each truck is along its route), ``repo`` (the plans' SQL), ``api`` and
``cli`` (``clearday plan``)."""
