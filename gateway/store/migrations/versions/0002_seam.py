"""the seam: delivery subjects and claims, acknowledgement de-duplication, delivery state

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import gateway.store.tables

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.alter_column('online', existing_type=sa.Boolean(), nullable=True)
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('claim_until', gateway.store.tables.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_delivery_subject'), ['subject'], unique=False)
    with op.batch_alter_table('acknowledgement', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dedup_key', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_acknowledgement_dedup_key'), ['dedup_key'])
    op.create_table('resource_delivery',
    sa.Column('resource_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('since', gateway.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('fetched_at', gateway.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', gateway.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', gateway.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('resource_id')
    )


def downgrade():
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.alter_column('online', existing_type=sa.Boolean(), nullable=False)
    op.drop_table('resource_delivery')
    with op.batch_alter_table('acknowledgement', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_acknowledgement_dedup_key'), type_='unique')
        batch_op.drop_column('dedup_key')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_subject'))
        batch_op.drop_column('claim_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('subject')
