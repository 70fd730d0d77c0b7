"""Staff accounts: creation, listing, disabling, passwords (A7, A24, A25); login is
staff_login.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import append_audit
from server.crypto import DataProtector
from server.domain.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from server.domain.staff import (
    Role,
    WitnessQualification,
    eligibility_problems,
    validate_password,
    validate_username,
)
from server.services.login_sessions import close_all_for
from server.services.password_checks import hash_password
from server.store.models import Staff


@dataclass(frozen=True)
class NewStaff:
    username: str
    display_name: str
    password: str
    roles: frozenset[Role]
    employee_number: str | None = None
    licence_number: str = ""
    has_labour_contract: bool = False
    training_passed_on: date | None = None
    is_marketing: bool = False
    phone: str | None = None
    id_number: str | None = None
    skills: frozenset[str] = frozenset()


def qualification(staff: Staff) -> WitnessQualification:
    return WitnessQualification(
        has_labour_contract=staff.has_labour_contract,
        training_passed_on=staff.training_passed_on,
        is_marketing=staff.is_marketing,
        licence_number=staff.licence_number,
        active=staff.active,
    )


def witness_problems(staff: Staff) -> list[str]:
    """Why this person may not witness now (A7); empty means eligible."""
    if Role.WITNESS.value not in staff.role_set:
        return ["not_a_witness"]
    return eligibility_problems(qualification(staff))


async def create_staff(
    *, tx: AsyncSession, new: NewStaff, protector: DataProtector, actor: str
) -> Staff:
    username = validate_username(new.username)
    # Hashed before the first query, so before the transaction begins: on SQLite that
    # takes the write lock, which a ~100 ms hash must not hold (issue 15 item 1).
    password_hash = hash_password(validate_password(new.password))
    if not new.display_name.strip():
        raise InvalidInput("display_name_required", "Display name is required.", "姓名不能为空。")
    if Role.WITNESS in new.roles and Role.ADMIN in new.roles:
        # Separation of duties: whoever manages staff records must not witness.
        raise InvalidInput(
            "role_conflict",
            "A witness cannot also be an admin.",
            "见证人员不能同时为管理员。",
        )
    existing = await tx.scalar(select(Staff).where(Staff.username == username))
    if existing is not None:
        raise Conflict(
            "username_taken",
            f"Username '{username}' is taken.",
            f"用户名“{username}”已存在。",
        )
    if new.employee_number:
        dup = await tx.scalar(select(Staff).where(Staff.employee_number == new.employee_number))
        if dup is not None:
            raise Conflict(
                "employee_number_taken",
                "Employee number already used.",
                "员工编号已被使用。",
            )
    staff = Staff(
        username=username,
        display_name=new.display_name.strip(),
        password_hash=password_hash,
        roles=",".join(sorted(r.value for r in new.roles)),
        active=True,
        employee_number=new.employee_number or None,
        licence_number=new.licence_number.strip(),
        has_labour_contract=new.has_labour_contract,
        training_passed_on=new.training_passed_on,
        is_marketing=new.is_marketing,
        phone_hash=protector.lookup_hash(new.phone, kind="phone") if new.phone else None,
        id_number_hash=(
            protector.lookup_hash(new.id_number.upper(), kind="id_number")
            if new.id_number
            else None
        ),
        failed_logins=0,
        skills=",".join(sorted(new.skills)),
    )
    tx.add(staff)
    await tx.flush()
    await append_audit(
        tx,
        actor=actor,
        action="staff.create",
        subject_type="staff",
        subject_id=staff.id,
        details={
            "username": username,
            "roles": sorted(r.value for r in new.roles),
            "witness_problems": witness_problems(staff) if Role.WITNESS in new.roles else [],
        },
    )
    return staff


async def list_staff(*, tx: AsyncSession) -> list[Staff]:
    return list((await tx.scalars(select(Staff).order_by(Staff.username))).all())


async def get_staff_by_username(*, tx: AsyncSession, username: str) -> Staff:
    staff = await tx.scalar(select(Staff).where(Staff.username == username.strip().lower()))
    if staff is None:
        raise NotFound(
            "staff_not_found",
            f"No staff member '{username}'.",
            f"没有用户“{username}”。",
        )
    return staff


async def set_staff_active(*, tx: AsyncSession, username: str, active: bool, actor: str) -> Staff:
    staff = await get_staff_by_username(tx=tx, username=username)
    staff.active = active
    if not active:
        await close_all_for(tx=tx, staff_id=staff.id)
    await append_audit(
        tx,
        actor=actor,
        action="staff.enable" if active else "staff.disable",
        subject_type="staff",
        subject_id=staff.id,
        details={"username": staff.username},
    )
    return staff


async def change_password(*, tx: AsyncSession, username: str, password: str, actor: str) -> Staff:
    password_hash = hash_password(validate_password(password))  # before the first query
    staff = await get_staff_by_username(tx=tx, username=username)
    staff.password_hash = password_hash
    staff.failed_logins = 0
    staff.locked_until = None
    await append_audit(
        tx,
        actor=actor,
        action="staff.password_set",
        subject_type="staff",
        subject_id=staff.id,
        details={"username": staff.username},
    )
    return staff
