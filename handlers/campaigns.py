"""Campaign prizes. No campaign can be created yet (a later issue brings campaigns and
claims), so the menu's 活動領獎 says so plainly instead of searching for the word
"prizes", and prepares people for claiming: a verified phone is what a claim will need."""

from __future__ import annotations

from bot.context import Context
from bot.messages import Button, Incoming, Reply, Text
from bot.router import COMMAND_ACTION, Router
from models import identity

router = Router("campaigns")


@router.on_command("prizes", words=("活動領獎", "領獎", "prizes", "prize"))
async def prizes(ctx: Context, msg: Incoming) -> Reply:
    """No campaign is running; unverified people are offered phone verification first."""
    phone = await identity.get_verified_phone(ctx.session, member_id=ctx.member.id)
    if phone is not None:
        return Text(text=ctx.t("campaigns.none_running"))
    return Text(
        text=ctx.t("campaigns.none_running_verify_first"),
        buttons=[Button(label=ctx.t("start.menu_item.verify"), action=f"{COMMAND_ACTION}:verify")],
    )
