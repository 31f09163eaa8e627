"""retention: indexes on the times rows are deleted by

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_reading_at', 'reading', ['at'], unique=False)
    op.create_index(op.f('ix_acknowledgement_at'), 'acknowledgement', ['at'], unique=False)
    op.create_index(op.f('ix_notice_created_at'), 'notice', ['created_at'], unique=False)
    op.create_index(op.f('ix_delivery_created_at'), 'delivery', ['created_at'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_delivery_created_at'), table_name='delivery')
    op.drop_index(op.f('ix_notice_created_at'), table_name='notice')
    op.drop_index(op.f('ix_acknowledgement_at'), table_name='acknowledgement')
    op.drop_index('ix_reading_at', table_name='reading')
