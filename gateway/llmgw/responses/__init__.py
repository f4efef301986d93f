"""The Responses API's stored conversations: any replica continues any conversation."""
