"""audit events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 08:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sp_audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sp_audit_events'))
    )
    with op.batch_alter_table('sp_audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sp_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_sp_audit_events_correlation_id'), ['correlation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sp_audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sp_audit_events_correlation_id'))
        batch_op.drop_index(batch_op.f('ix_sp_audit_events_action'))
    op.drop_table('sp_audit_events')
