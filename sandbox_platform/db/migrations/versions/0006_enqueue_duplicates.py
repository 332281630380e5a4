"""repeats caught at enqueue (duplicates of an earlier job of the same idempotency key)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 00:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sp_enqueue_duplicates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('task_name', sa.String(length=255), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('duplicate_of', sa.String(length=64), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_key', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sp_enqueue_duplicates')),
    sa.UniqueConstraint('event_key', name=op.f('uq_sp_enqueue_duplicates_event_key'))
    )
    with op.batch_alter_table('sp_enqueue_duplicates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sp_enqueue_duplicates_correlation_id'), ['correlation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sp_enqueue_duplicates_duplicate_of'), ['duplicate_of'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sp_enqueue_duplicates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sp_enqueue_duplicates_duplicate_of'))
        batch_op.drop_index(batch_op.f('ix_sp_enqueue_duplicates_correlation_id'))
    op.drop_table('sp_enqueue_duplicates')
