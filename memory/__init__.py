"""What the bot remembers about the people it talks with, per member per guild.

- `extract`: facts a member tells about themselves, from their transcribed lines (rules, no model).
- `store`: the rows (facts, call summaries, privacy choices) in the database, full-text searched.
- `recall`: the memories relevant to a reply, as one prompt block within its token budget.
- `summarize`: a short summary of a member's part in a call (the LLM, or their own telling lines).
- `recorder` / `writer` / `service`: collecting lines during a call and writing in the background.
"""
