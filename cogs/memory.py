"""`/privacy optout|optin` (each member) and `/memory show|forget` (each member), `/memory off|on` (Manage Server),
and a member leaving the server (their data deleted after the grace period: `memory.removal`).

Opting out takes effect at once: the member's audio is dropped in the receive layer before decoding,
what was remembered about them is deleted, and the choice is saved. `/memory forget` asks for a
confirmation first. Every answer is ephemeral: only the member who asked sees it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs.persona import can_manage
from cogs.prompter import apply_opt_out
from memory.recall import ago
from memory.service import names_of
from storage.errors import StorageError
from storage.schema import FACT

if TYPE_CHECKING:
    from bot.client import ChorusBot

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
CONFIRM_TIMEOUT_S = 60.0


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1].rstrip() + "…"


async def begin(interaction: discord.Interaction) -> None:
    """Answer Discord at once (within its 3 s), privately, before touching the database: a slow or absent
    database then costs a late answer, never "The application did not respond"."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)


async def answer(interaction: discord.Interaction, text: str) -> None:
    """The command's private answer: a follow-up after `begin`, else the response."""
    if interaction.response.is_done():
        await interaction.followup.send(_clip(text), ephemeral=True)
    else:
        await interaction.response.send_message(_clip(text), ephemeral=True)


UNAVAILABLE = "the database is unavailable right now"


@app_commands.guild_only()
class PrivacyCog(commands.GroupCog, group_name="privacy", group_description="Whether the bot listens to you"):
    def __init__(self, bot: "ChorusBot") -> None:
        self.bot = bot

    @app_commands.command(name="optout", description="Stop the bot from listening to you (nothing transcribed or kept)")
    async def optout(self, interaction: discord.Interaction) -> None:
        guild_id = interaction.guild_id
        assert guild_id is not None
        user = interaction.user
        session = self.bot.voice_sessions.get(guild_id)
        apply_opt_out(session, user.id, True)  # the next packet is dropped; what was heard of them too
        await begin(interaction)
        try:
            deleted = await self.bot.memory.opt_out(guild_id, user.id, names_of(user))
        except StorageError as exc:
            log.warning("guild %d: opt-out of user %d applied but not saved yet (%s)", guild_id, user.id, exc.kind)
            await answer(
                interaction,
                "Done: I no longer listen to you in this server. I couldn't save the choice yet "
                f"({UNAVAILABLE}); it holds while I run, and I save it as soon as the database answers.",
            )
            return
        log.info("guild %d: user %d opted out (%d memories deleted)", guild_id, user.id, deleted)
        gone = (
            f" and deleted the {deleted} thing{'s' if deleted != 1 else ''} I remembered about you" if deleted else ""
        )
        await answer(
            interaction,
            f"Done: I no longer listen to you in this server (your voice is dropped before it is decoded: "
            f"never transcribed or stored){gone}. /privacy optin undoes this.",
        )

    @commands.Cog.listener()
    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        """A member left the server (or was kicked or banned; needs the members intent, FORGET_MEMBERS_WHO_LEAVE):
        what is kept about them there is deleted after REMOVAL_GRACE_DAYS unless they rejoin."""
        if self.bot.user is not None and payload.user.id == self.bot.user.id:
            return  # the bot itself: on_guild_remove
        try:
            await self.bot.memory.member_left(payload.guild_id, payload.user.id, names_of(payload.user))
        except StorageError as exc:
            log.warning(
                "guild %d: user %d left; their data could not be marked for deletion now (%s)",
                payload.guild_id,
                payload.user.id,
                exc.kind,
            )

    @commands.Cog.listener()
    async def on_member_join(self, member: discord.Member) -> None:
        """Back within the grace period (needs the members intent): nothing about them is deleted."""
        try:
            await self.bot.memory.member_returned(member.guild.id, member.id)
        except StorageError as exc:
            log.warning(
                "guild %d: user %d rejoined; their departure mark could not be cleared (%s)",
                member.guild.id,
                member.id,
                exc.kind,
            )

    @app_commands.command(name="optin", description="Let the bot listen to you again")
    async def optin(self, interaction: discord.Interaction) -> None:
        guild_id = interaction.guild_id
        assert guild_id is not None
        if not self.bot.memory.is_opted_out(guild_id, interaction.user.id):
            await interaction.response.send_message(
                "You haven't opted out here: I already listen to you.", ephemeral=True
            )
            return
        await begin(interaction)
        await self.bot.memory.opt_in(guild_id, interaction.user.id)  # StorageError: the bot's error reply
        apply_opt_out(self.bot.voice_sessions.get(guild_id), interaction.user.id, False)
        log.info("guild %d: user %d opted in", guild_id, interaction.user.id)
        await answer(interaction, "Welcome back: I listen to you again in this server.")


class ForgetConfirm(discord.ui.View):
    """Two buttons under the ephemeral question; only the member who asked sees them."""

    def __init__(self, cog: "MemoryCog", user_id: int) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self.cog = cog
        self.user_id = user_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.user_id

    @discord.ui.button(label="Forget everything", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        guild_id = interaction.guild_id
        assert guild_id is not None
        await interaction.response.edit_message(content="Forgetting…", view=None)  # within Discord's 3 s
        try:
            deleted = await self.cog.bot.memory.forget(guild_id, interaction.user.id, names_of(interaction.user))
        except StorageError as exc:
            log.warning("guild %d: /memory forget for user %d failed (%s)", guild_id, interaction.user.id, exc.kind)
            await interaction.edit_original_response(
                content=f"Sorry, I couldn't delete it right now ({UNAVAILABLE}). Nothing was deleted; try again later."
            )
            return
        log.info("guild %d: user %d had their memories forgotten (%d rows)", guild_id, interaction.user.id, deleted)
        await interaction.edit_original_response(
            content=f"Done: I forgot everything about you in this server ({deleted} memor{'y' if deleted == 1 else 'ies'})."
        )

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Okay, I kept everything.", view=None)


@app_commands.guild_only()
class MemoryCog(commands.GroupCog, group_name="memory", group_description="What the bot remembers"):
    def __init__(self, bot: "ChorusBot") -> None:
        self.bot = bot

    @app_commands.command(name="show", description="What the bot remembers about you (only you see it)")
    async def show(self, interaction: discord.Interaction) -> None:
        guild_id = interaction.guild_id
        assert guild_id is not None
        memory = self.bot.memory
        notes = []
        if memory.is_opted_out(guild_id, interaction.user.id):
            notes.append("You opted out: I don't listen to you here, so I keep nothing about you.")
        if not memory.remembers(guild_id):
            notes.append("Memory is off in this server.")
        await begin(interaction)
        rows = await memory.about(guild_id, interaction.user.id)  # StorageError: the bot's error reply
        if not rows:
            text = "I don't remember anything about you in this server."
        else:
            now = time.time()
            facts = [f"• {m.text}" for m in rows if m.kind == FACT]
            calls = [f"• {ago(m.updated_at, now)}: {m.text}" for m in rows if m.kind != FACT]
            parts = ["**What I remember about you here:**", *facts]
            if calls:
                parts += ["**From our calls:**", *calls]
            parts.append("(/memory forget deletes all of it.)")
            text = "\n".join(parts)
        await answer(interaction, "\n".join([*notes, text]))

    @app_commands.command(name="forget", description="Delete everything the bot remembers about you")
    async def forget(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            "Delete everything I remember about you in this server? This can't be undone.",
            view=ForgetConfirm(self, interaction.user.id),
            ephemeral=True,
        )

    @app_commands.command(name="off", description="Stop remembering anything in this server (Manage Server)")
    async def off(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        if not can_manage(interaction.user):
            await interaction.response.send_message(
                "Turning memory off for the server needs the Manage Server permission.", ephemeral=True
            )
            return
        await begin(interaction)
        try:
            await self.bot.guild_store.set_memory_enabled(interaction.guild_id, False)
        except StorageError as exc:  # fail closed: off at once, saved when the database answers
            self.bot.guild_store.apply_unsaved(interaction.guild_id, memory_enabled=False)
            log.warning(
                "guild %d: memory turned off by user %d, not saved yet (%s)",
                interaction.guild_id,
                interaction.user.id,
                exc.kind,
            )
            await answer(
                interaction,
                "Memory is off in this server from now on: I keep nothing new and use nothing "
                "I remembered. I couldn't save the setting yet (the database is unavailable); I'll save "
                "it as soon as it answers.",
            )
            return
        log.info("guild %d: memory turned off by user %d", interaction.guild_id, interaction.user.id)
        await answer(
            interaction,
            "Memory is off in this server: I keep nothing new and use nothing I remembered. What is stored "
            "stays until members use /memory forget or it expires; /memory on turns it back on.",
        )

    @app_commands.command(name="recall", description="Whose memories a reply may use here (Manage Server)")
    @app_commands.describe(
        scope="present: of everyone in the call (they hear it); speaker: only of the member answered"
    )
    async def recall(self, interaction: discord.Interaction, scope: Literal["present", "speaker"]) -> None:
        assert interaction.guild_id is not None
        if not can_manage(interaction.user):
            await interaction.response.send_message(
                "Changing what I recall needs the Manage Server permission.", ephemeral=True
            )
            return
        await begin(interaction)
        await self.bot.guild_store.set_recall(interaction.guild_id, scope)  # StorageError: the error reply
        log.info("guild %d: recall scope set to %s by user %d", interaction.guild_id, scope, interaction.user.id)
        await answer(
            interaction,
            "From now on I bring up what a member told me only when I answer that member."
            if scope == "speaker"
            else "From now on I may bring up what any member in the call told me (everyone there hears it).",
        )

    @app_commands.command(name="on", description="Remember things again in this server (Manage Server)")
    async def on(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        if not can_manage(interaction.user):
            await interaction.response.send_message(
                "Turning memory on for the server needs the Manage Server permission.", ephemeral=True
            )
            return
        if not self.bot.settings.memory_enabled:
            await interaction.response.send_message(
                "Memory is turned off for this whole bot (MEMORY_ENABLED=false).", ephemeral=True
            )
            return
        await begin(interaction)
        await self.bot.guild_store.set_memory_enabled(interaction.guild_id, True)  # StorageError: the error reply
        log.info("guild %d: memory turned on by user %d", interaction.guild_id, interaction.user.id)
        await answer(interaction, "Memory is on in this server.")


async def setup(bot: "ChorusBot") -> None:
    await bot.add_cog(PrivacyCog(bot))
    await bot.add_cog(MemoryCog(bot))
