"""Customer lists (mParticle audiences) and their members, scoped to one tenant. Nothing here commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import CustomerList, ListMember
from shared.vocabulary import ListStatus


@dataclass(frozen=True)
class ListSummary:
    """A list with its number of members."""

    list: CustomerList
    member_count: int


class CustomerListRepository:
    """Lists and memberships of one tenant; audience ids are unique per tenant."""

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def find_for_audience(self, audience_id: int) -> CustomerList | None:
        return await self.session.scalar(
            select(CustomerList).where(
                CustomerList.tenant_id == self.tenant_id, CustomerList.audience_id == audience_id
            )
        )

    async def ensure_for_audience(self, audience_id: int, name: str) -> CustomerList:
        """The list bound to `audience_id`, created (active, named `name`) when there is none."""
        created: CustomerList | None = await self.session.scalar(
            insert(CustomerList)
            .values(tenant_id=self.tenant_id, audience_id=audience_id, name=name, status=ListStatus.ACTIVE)
            .on_conflict_do_nothing(index_elements=[CustomerList.tenant_id, CustomerList.audience_id])
            .returning(CustomerList)
        )
        if created is not None:
            return created
        existing = await self.find_for_audience(audience_id)
        if existing is None:  # removed between the two statements: practically never
            raise LookupError(f"list of audience {audience_id} vanished while being created")
        return existing

    async def rename_for_audience(self, audience_id: int, name: str) -> None:
        """Rename the audience's list, creating it when mParticle never announced it."""
        await self.session.execute(
            insert(CustomerList)
            .values(tenant_id=self.tenant_id, audience_id=audience_id, name=name, status=ListStatus.ACTIVE)
            .on_conflict_do_update(
                index_elements=[CustomerList.tenant_id, CustomerList.audience_id],
                set_={"name": name, "updated_at": func.now()},
            )
        )

    async def delete_for_audience(self, audience_id: int) -> bool:
        """Delete the audience's list with its memberships; False when there was none."""
        deleted = await self.session.scalar(
            delete(CustomerList)
            .where(CustomerList.tenant_id == self.tenant_id, CustomerList.audience_id == audience_id)
            .returning(CustomerList.id)
        )
        return deleted is not None

    async def add_member(self, list_id: int, customer_id: str) -> bool:
        """Add a customer to a list; False when already a member."""
        added = await self.session.scalar(
            insert(ListMember)
            .values(list_id=list_id, customer_id=customer_id, tenant_id=self.tenant_id)
            .on_conflict_do_nothing(index_elements=[ListMember.list_id, ListMember.customer_id])
            .returning(ListMember.customer_id)
        )
        return added is not None

    async def remove_member(self, list_id: int, customer_id: str) -> bool:
        """Remove a customer from a list; False when not a member."""
        removed = await self.session.scalar(
            delete(ListMember)
            .where(
                ListMember.list_id == list_id,
                ListMember.customer_id == customer_id,
                ListMember.tenant_id == self.tenant_id,
            )
            .returning(ListMember.customer_id)
        )
        return removed is not None

    def _summaries(self) -> Select[CustomerList, int]:
        member_count = (
            select(func.count()).where(ListMember.list_id == CustomerList.id).correlate(CustomerList).scalar_subquery()
        )
        return select(CustomerList, member_count).where(CustomerList.tenant_id == self.tenant_id)

    async def get(self, list_id: int) -> ListSummary | None:
        row = (await self.session.execute(self._summaries().where(CustomerList.id == list_id))).first()
        return ListSummary(row[0], row[1]) if row else None

    async def page(self, *, limit: int, after_id: int | None = None) -> list[ListSummary]:
        """Lists in id order with their member counts."""
        query = self._summaries()
        if after_id is not None:
            query = query.where(CustomerList.id > after_id)
        rows = await self.session.execute(query.order_by(CustomerList.id).limit(limit))
        return [ListSummary(row[0], row[1]) for row in rows]

    async def update(self, list_id: int, *, name: str | None, status: str | None) -> bool:
        """Rename and/or (de)activate a list; False when the tenant has no such list."""
        values: dict[str, object] = {"updated_at": func.now()}
        if name is not None:
            values["name"] = name
        if status is not None:
            values["status"] = status
        changed = await self.session.scalar(
            update(CustomerList)
            .where(CustomerList.tenant_id == self.tenant_id, CustomerList.id == list_id)
            .values(values)
            .returning(CustomerList.id)
        )
        return changed is not None

    async def members_page(self, list_id: int, *, limit: int, after_customer_id: str | None = None) -> list[ListMember]:
        """Members of a list in customer id order."""
        query = select(ListMember).where(ListMember.tenant_id == self.tenant_id, ListMember.list_id == list_id)
        if after_customer_id is not None:
            query = query.where(ListMember.customer_id > after_customer_id)
        return list(await self.session.scalars(query.order_by(ListMember.customer_id).limit(limit)))
