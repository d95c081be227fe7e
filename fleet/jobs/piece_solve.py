"""The solving process of one piece of a decomposed district, started by a worker
(fleet/jobs/pieces.py):

    python -m fleet.jobs.piece_solve PIECE_ID WORKER_PID

Reads the piece's sub-problem from `plan_piece`, solves it, writes the plan back
(only while the piece is still its worker's: a piece replaced or cancelled meanwhile
is left alone). Exits 0 when written or no longer wanted, 2 when the row cannot be
read (the reason on stderr). It dies with the worker that started it.
"""

from __future__ import annotations

import pickle
import sys

import psycopg

from fleet.config import Settings
from fleet.jobs import repo
from routing.pieces import SubSolve, solve_sub
from routing.processes import die_with

EXIT_UNREADABLE = 2


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return EXIT_UNREADABLE
    piece_id, parent_pid = int(argv[1]), int(argv[2])
    die_with(parent_pid)
    with psycopg.connect(Settings().storage.database_dsn(), autocommit=True) as conn:
        sub_solve = repo.running_sub_solve(conn, piece_id=piece_id)
        if sub_solve is None:
            print(f"piece {piece_id} is no longer wanted")
            return 0
        try:
            job = pickle.loads(sub_solve)
        except Exception as exc:
            print(f"piece {piece_id}: its sub-problem cannot be read: {exc!r}", file=sys.stderr)
            return EXIT_UNREADABLE
        if not isinstance(job, SubSolve):
            print(f"piece {piece_id}: not a sub-problem: {type(job)}", file=sys.stderr)
            return EXIT_UNREADABLE
        plan = solve_sub(job)
        repo.finish_piece(conn, piece_id=piece_id, result=pickle.dumps(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
