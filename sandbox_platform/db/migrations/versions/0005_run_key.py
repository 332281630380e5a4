"""run records carry a unique run key (the run-record outbox drains idempotently on it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 14:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sp_job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run_key', sa.String(length=120), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_sp_job_runs_run_key'), ['run_key'])


def downgrade() -> None:
    with op.batch_alter_table('sp_job_runs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_sp_job_runs_run_key'), type_='unique')
        batch_op.drop_column('run_key')
