"""`/persona set|show|list|reload`: choose who the bot is in this server."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from conversation.persona import Persona
from conversation.persona_library import AUTOCOMPLETE_LIMIT, format_errors

if TYPE_CHECKING:
    from bot.client import ChorusBot

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
CHOICE_NAME_LIMIT = 100


def can_switch_persona(member: discord.abc.User, role_ids: str) -> bool:
    """Manage Server, or a role whose id is in CHORUS_PERSONA_ROLE (ids, comma or space separated: a role's
    name proves nothing, anyone who can manage roles in any server can make one with that name)."""
    perms = getattr(member, "guild_permissions", None)
    if perms is not None and (perms.manage_guild or perms.administrator):
        return True
    wanted = persona_role_ids(role_ids)
    return bool(wanted) and any(role.id in wanted for role in getattr(member, "roles", ()))


def persona_role_ids(value: str) -> frozenset[int]:
    """The role ids of CHORUS_PERSONA_ROLE (anything that is not an id is ignored, with a warning at start)."""
    return frozenset(int(part) for part in value.replace(",", " ").split() if part.isdigit())


def can_manage(member: discord.abc.User) -> bool:
    perms = getattr(member, "guild_permissions", None)
    return perms is not None and (perms.manage_guild or perms.administrator)


def _clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe_persona(persona: Persona) -> str:
    lines = [f"**{persona.name}**: {persona.description}", f"Voice: {persona.voice.describe()}"]
    lines.append(f"Replies: up to {persona.max_reply_sentences} sentence(s), {persona.max_reply_words} words")
    if persona.greeting:
        lines.append(f"Greeting: \u201c{persona.greeting}\u201d")
    if persona.source is not None:
        lines.append(f"File: `{persona.source.name}`")
    return _clip("\n".join(lines))


def error_report(errors: list[tuple]) -> str:
    if not errors:
        return ""
    lines = ["Broken persona files (not loaded):"] + [f"- {line}" for line in format_errors(errors)]
    return "\n".join(lines)


@app_commands.guild_only()
class PersonaCog(commands.GroupCog, group_name="persona", group_description="Choose who the bot is in this server"):
    def __init__(self, bot: "ChorusBot") -> None:
        role = bot.settings.persona_role.strip()
        if role and not persona_role_ids(role):
            log.warning(
                "CHORUS_PERSONA_ROLE=%r holds no role id: only Manage Server switches personas (a role is "
                "named by its id: Server Settings > Roles > right-click > Copy Role ID)",
                role,
            )
        self.bot = bot

    @app_commands.command(name="set", description="Switch the bot to another persona")
    @app_commands.describe(name="Persona name (start typing to see them)")
    async def set_persona(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = interaction.guild_id
        assert guild_id is not None
        role = self.bot.settings.persona_role
        if not can_switch_persona(interaction.user, role):
            roles = [r.name for r in getattr(interaction.guild, "roles", ()) if r.id in persona_role_ids(role)]
            who = (
                f"Manage Server or the **{roles[0]}** role"
                if roles
                else "Manage Server or the persona role"
                if persona_role_ids(role)
                else "the Manage Server permission"
            )
            await interaction.response.send_message(f"Switching personas needs {who}.", ephemeral=True)
            return
        persona = self.bot.personas.get(name)
        if persona is None:
            close = [p.name for p in self.bot.personas.search(name, limit=5)]
            hint = f" Did you mean {', '.join(close)}?" if close else " See /persona list."
            await interaction.response.send_message(
                _clip(f"There is no persona named \u201c{name}\u201d.{hint}"), ephemeral=True
            )
            return
        # answer Discord (within its 3 s) before the database: a stalled one then costs a late answer, never
        # "The application did not respond"
        await interaction.response.defer(thinking=True)
        await self.bot.guild_store.set_persona(guild_id, persona.name)  # StorageError: the bot's error reply
        live = guild_id in self.bot.voice_sessions
        if live:
            await self.bot.on_persona_changed(guild_id, persona)
        log.info("guild %d: persona set to %s by user %d", guild_id, persona.name, interaction.user.id)
        tail = " (switching voices now)" if live else ""
        await interaction.followup.send(f"I'm {persona.name} now{tail}. {persona.description}")

    @set_persona.autocomplete("name")
    async def _name_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        choices = []
        for persona in self.bot.personas.search(current, limit=AUTOCOMPLETE_LIMIT):
            label = persona.name if not persona.description else f"{persona.name}: {persona.description}"
            choices.append(app_commands.Choice(name=_clip(label, CHOICE_NAME_LIMIT), value=persona.name))
        return choices[:AUTOCOMPLETE_LIMIT]

    @app_commands.command(name="show", description="Show the persona the bot uses in this server")
    async def show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        persona = self.bot.persona_for(interaction.guild_id)
        chosen = self.bot.guild_store.get(interaction.guild_id).persona
        note = ""
        if chosen and chosen.casefold() != persona.name.casefold():
            note = f"\n(The chosen persona \u201c{chosen}\u201d is not loaded; using {persona.name}.)"
        elif not chosen:
            note = "\n(The default persona: nobody has chosen one here yet.)"
        await interaction.response.send_message(_clip(describe_persona(persona) + note), ephemeral=True)

    @app_commands.command(name="list", description="List the available personas")
    async def list_personas(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        current = self.bot.persona_for(interaction.guild_id).name
        lines = [f"{'▶ ' if p.name == current else '• '}**{p.name}**: {p.description}" for p in self.bot.personas] or [
            "No personas are loaded."
        ]
        await interaction.response.send_message(_clip("\n".join(lines)), ephemeral=True)

    @app_commands.command(name="reload", description="Re-read the persona files (Manage Server)")
    async def reload(self, interaction: discord.Interaction) -> None:
        if not can_manage(interaction.user):
            await interaction.response.send_message(
                "Reloading personas needs the Manage Server permission.", ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        fresh = await self.bot.reload_personas(apply_to=[interaction.guild_id] if interaction.guild_id else [])
        if len(fresh) == 0 and self.bot.personas is not fresh:
            head = f"No persona could be loaded, so I kept the {len(self.bot.personas)} I had."
        else:
            head = f"Loaded {len(fresh)} persona(s): {', '.join(fresh.names()) or 'none'}."
        report = error_report(fresh.errors)  # file names only: the bot's folders are not the members' business
        await interaction.followup.send(_clip(head + ("\n" + report if report else "")), ephemeral=True)


async def setup(bot: "ChorusBot") -> None:
    await bot.add_cog(PersonaCog(bot))
