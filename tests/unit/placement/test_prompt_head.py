"""The head of a prompt that prefix routing keys on: a conversation's start, cut at a limit."""

from llmgw.placement.prompt_head import head_and_sharing

DOC = "A long shared document. " * 400  # about 9.6 KB


def prompt_head(body: dict, limit: int) -> bytes:
    return head_and_sharing(body, limit)[0]


def _chat(*messages):
    return {"messages": [{"role": r, "content": c} for r, c in messages]}


def test_every_later_turn_of_a_conversation_has_the_first_turns_head():
    first = _chat(("system", "Be brief."), ("user", "What is a prefix cache?"))
    later = _chat(("system", "Be brief."), ("user", "What is a prefix cache?"),
                  ("assistant", "It keeps KV blocks."), ("user", "And eviction?"))
    assert prompt_head(first, 2048) == prompt_head(later, 2048)
    assert b"And eviction" not in prompt_head(later, 2048)
    # the first turn shares nothing yet (placed by load); the later one resends its start
    assert not head_and_sharing(first, 2048)[1] and head_and_sharing(later, 2048)[1]


def test_conversations_with_a_short_generic_system_prompt_differ_by_their_first_question():
    a = _chat(("system", "You are a helpful assistant."), ("user", "Plan a trip to Rome"))
    b = _chat(("system", "You are a helpful assistant."), ("user", "Fix my SQL query"))
    assert prompt_head(a, 2048) != prompt_head(b, 2048)


def test_a_long_shared_document_binds_its_users_together_by_its_first_bytes():
    a = _chat(("system", DOC), ("user", "Summarise it"))
    b = _chat(("system", DOC), ("user", "Who wrote it?"))
    assert prompt_head(a, 2048) == prompt_head(b, 2048) and len(prompt_head(a, 2048)) == 2048
    assert head_and_sharing(a, 2048)[1]  # a preamble that fills the head is shared


def test_tools_and_content_parts_are_part_of_the_head():
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"},
                                                       {"type": "image_url",
                                                        "image_url": {"url": "https://x/1.png"}}]}]}
    other = {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"},
                                                       {"type": "image_url",
                                                        "image_url": {"url": "https://x/2.png"}}]}]}
    assert prompt_head(parts, 2048) != prompt_head(other, 2048)
    with_tools = {**_chat(("user", "hi")), "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert b'"name":"f"' in prompt_head(with_tools, 2048)


def test_completion_prompts_and_odd_shapes():
    assert prompt_head({"prompt": "x" * 5000}, 100) == b"x" * 100
    assert prompt_head({"prompt": ["first", "second"]}, 100) == b"first"
    assert prompt_head({"prompt": [1, 2, 3]}, 100) == b""  # token ids: placed by load
    assert prompt_head({"messages": [None, 3, {"role": 5, "content": {"x": 1}}]}, 100) == b"\n\n:"
    assert prompt_head({}, 100) == b""


def test_multibyte_text_is_cut_by_bytes():
    head = prompt_head({"prompt": "é" * 100}, 51)
    assert len(head) == 51


def test_the_lone_first_turn_shortcut_says_what_rendering_would():
    bodies = [{"messages": [{"role": "user", "content": "hi"}]},
              {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]},
              {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                            {"role": "user", "content": "r"}]},
              {"messages": [{"role": "user", "content": "q"}], "tools": [{"type": "function"}]},
              {"messages": [{"role": "assistant", "content": "a"}]},
              {"messages": ["not a message"]}, {"prompt": "a completion"}]
    for body in bodies:
        full = head_and_sharing(body, 2048)
        quick = head_and_sharing(body, 2048, unshared=False)
        assert quick[1] == full[1], body
        if full[1]:
            assert quick[0] == full[0], body  # a shared head is always rendered
    assert head_and_sharing(bodies[0], 2048, unshared=False) == (b"", False)
    assert head_and_sharing(bodies[0], 2048)[0] == b"user:hi"  # rendered when asked for


def test_a_messages_api_system_prompt_leads_the_head():
    """Anthropic's Messages API keeps the system prompt beside the messages; vLLM renders it
    first, so a long shared one binds its users together as a chat system message does."""
    a = {"system": DOC, "messages": [{"role": "user", "content": "Summarise it"}]}
    b = {"system": [{"type": "text", "text": DOC}], "messages": [{"role": "user", "content": "Who?"}]}
    assert prompt_head(a, 2048) == prompt_head(b, 2048) and head_and_sharing(a, 2048)[1]
    short = {"system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]}
    assert prompt_head(short, 2048).startswith(b"system:Be brief.")
    # the lone-first-turn shortcut does not skip a system prompt that fills the head
    assert head_and_sharing(a, 2048, unshared=False) == head_and_sharing(a, 2048)
