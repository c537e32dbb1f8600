"""contacts: notes on a contact, merges (and what moved, to undo them), deleted/merged/erased contacts, and the
indexes the contact search index refreshes itself by; tickets' erased_at (GDPR erase, retention)

Revision ID: contacts_merge_notes
Revises: workspace_ticket_search
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "contacts_merge_notes"
down_revision: str | None = "workspace_ticket_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs (the foreign key inline): on SQLite a batch that creates a constraint copies the table
    # and drops the old one, which its foreign keys refuse once contacts are stored.
    op.add_column("contacts", sa.Column("deleted_at", hub.db.UTCDateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "sqlite":  # Alembic alters no constraint there; SQLite adds one inline
        op.execute(
            "ALTER TABLE contacts ADD COLUMN merged_into_id INTEGER "
            "CONSTRAINT fk_contacts_merged_into_id REFERENCES contacts (id)"
        )
    else:
        op.add_column("contacts", sa.Column("merged_into_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_contacts_merged_into_id", "contacts", "contacts", ["merged_into_id"], ["id"])
    op.add_column("contacts", sa.Column("erased_at", hub.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_contacts_updated_at", "contacts", ["updated_at"])
    op.add_column("tickets", sa.Column("erased_at", hub.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_contact_identities_created_at", "contact_identities", ["created_at"])
    op.create_table(
        "contact_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("author_agent_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["author_agent_id"], ["agents.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contact_notes_contact_id", "contact_notes", ["contact_id"])
    op.create_table(
        "contact_merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("merged_id", sa.Integer(), nullable=False),
        sa.Column("moved", hub.db.JSONType, nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("undone_at", hub.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("undone_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["survivor_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["merged_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"]),
        sa.ForeignKeyConstraint(["undone_by"], ["agents.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contact_merges_survivor_id", "contact_merges", ["survivor_id"])
    op.create_index("ix_contact_merges_merged_id", "contact_merges", ["merged_id"])


def downgrade() -> None:
    op.drop_table("contact_merges")
    op.drop_table("contact_notes")
    op.drop_index("ix_contact_identities_created_at", table_name="contact_identities")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("erased_at")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_index("ix_contacts_updated_at")
        batch.drop_constraint("fk_contacts_merged_into_id", type_="foreignkey")
        batch.drop_column("erased_at")
        batch.drop_column("merged_into_id")
        batch.drop_column("deleted_at")
