"""a job run's parent and root job (the job tree)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 02:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sp_job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('root_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_sp_job_runs_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sp_job_runs_root_id'), ['root_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sp_job_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sp_job_runs_root_id'))
        batch_op.drop_index(batch_op.f('ix_sp_job_runs_parent_id'))
        batch_op.drop_column('root_id')
        batch_op.drop_column('parent_id')
