"""Who may see and do what on an app: the one place for these checks.

Apps are visible to every authenticated user, so an action someone may not take
on an app is 403; objects hidden from a caller are answered 404 by the services.
"""

from __future__ import annotations

from app.core.errors import Unauthorized
from app.core.security import Principal
from app.models import App


def is_owner(app: App, principal: Principal) -> bool:
    return app.owner_id == principal.user_id


def is_approver(app: App, principal: Principal) -> bool:
    return principal.user_id in (app.approvers or [])


def manages(app: App, principal: Principal) -> bool:
    """Owner or admin: may change the app's milestones and ask for releases."""
    return principal.is_admin or is_owner(app, principal)


def oversees(app: App, principal: Principal) -> bool:
    """Owner, approvers or admin: may read the app's escrow."""
    return manages(app, principal) or is_approver(app, principal)


def decides(app: App, principal: Principal) -> bool:
    """Approvers or admins, never the owner: nobody approves money going to themselves."""
    return not is_owner(app, principal) and (principal.is_admin or is_approver(app, principal))


def require(allowed: bool, message: str) -> None:
    if not allowed:
        raise Unauthorized(message)
