#!/bin/bash
# Captures raw responses (status line + headers + body) from real vLLM 0.32 (CPU) servers.
# Servers: chat "tiny-chat" on :8101, embed "tiny-embed" on :8104, rerank "tiny-rerank" on :8105
# started with --api-key sk-test. Each case is saved as <case>.txt in this folder.
# lora: a chat server that also loads a tiny LoRA adapter (README.txt), on :8106.
C=${C:-http://127.0.0.1:8101}; E=${E:-http://127.0.0.1:8104}; R=${R:-http://127.0.0.1:8105}
L=${L:-http://127.0.0.1:8106}
J='Content-Type: application/json'
cd "$(dirname "$0")"
cap() { local name=$1; shift; curl -sS -i -N "$@" > "$name.txt"; echo "$name: $(head -1 "$name.txt" | tr -d '\r')"; }
MSG='"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello"}]'
case "${1:-all}" in chat|all)
cap models_chat           $C/v1/models
cap health                $C/health
cap version               $C/version
cap metrics_chat          $C/metrics
cap tokenize_prompt       $C/tokenize -H "$J" -d '{"model":"tiny-chat","prompt":"Hello world"}'
cap tokenize_messages     $C/tokenize -H "$J" -d '{"model":"tiny-chat",'"$MSG"',"add_generation_prompt":true}'
cap detokenize            $C/detokenize -H "$J" -d '{"model":"tiny-chat","tokens":[10,20,30]}'
cap chat_nonstream        $C/v1/chat/completions -H "$J" -d '{"model":"tiny-chat",'"$MSG"',"max_tokens":8,"temperature":0}'
cap chat_nonstream_n2_logprobs $C/v1/chat/completions -H "$J" -d '{"model":"tiny-chat",'"$MSG"',"max_tokens":3,"n":2,"logprobs":true,"top_logprobs":2,"seed":1}'
cap chat_stream           $C/v1/chat/completions -H "$J" -d '{"model":"tiny-chat",'"$MSG"',"max_tokens":5,"temperature":0,"stream":true}'
cap chat_stream_usage     $C/v1/chat/completions -H "$J" -d '{"model":"tiny-chat",'"$MSG"',"max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}'
cap chat_stream_usage_continuous $C/v1/chat/completions -H "$J" -d '{"model":"tiny-chat",'"$MSG"',"max_tokens":3,"temperature":0,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}'
cap completions_nonstream $C/v1/completions -H "$J" -d '{"model":"tiny-chat","prompt":"Once upon a time","max_tokens":8,"temperature":0}'
cap completions_stream    $C/v1/completions -H "$J" -d '{"model":"tiny-chat","prompt":"Once upon a time","max_tokens":5,"temperature":0,"stream":true}'
cap completions_stream_usage $C/v1/completions -H "$J" -d '{"model":"tiny-chat","prompt":"Once upon a time","max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}'
cap error_unknown_model   $C/v1/chat/completions -H "$J" -d '{"model":"no-such-model",'"$MSG"',"max_tokens":4}'
cap error_missing_messages $C/v1/chat/completions -H "$J" -d '{"model":"tiny-chat","max_tokens":4}'
cap error_max_tokens_0    $C/v1/chat/completions -H "$J" -d '{"model":"tiny-chat",'"$MSG"',"max_tokens":0}'
cap error_malformed_json  $C/v1/chat/completions -H "$J" -d '{"model":"tiny-chat", "messages": [}'
cap error_prompt_too_long $C/v1/completions -H "$J" -d '{"model":"tiny-chat","prompt":"'"$(printf 'hello %.0s' {1..600})"'","max_tokens":4}'
cap error_completions_unknown_model $C/v1/completions -H "$J" -d '{"model":"no-such-model","prompt":"hi","max_tokens":4}'
cap error_not_found_route $C/v1/nope
;; esac
case "${1:-all}" in embed|all)
cap models_embed          $E/v1/models
cap embeddings_float      $E/v1/embeddings -H "$J" -d '{"model":"tiny-embed","input":["Hello world","The quick brown fox"]}'
cap embeddings_base64     $E/v1/embeddings -H "$J" -d '{"model":"tiny-embed","input":"Hello world","encoding_format":"base64"}'
cap embeddings_token_ids  $E/v1/embeddings -H "$J" -d '{"model":"tiny-embed","input":[[2,10,11,3]]}'
cap tokenize_embed        $E/tokenize -H "$J" -d '{"model":"tiny-embed","prompt":"Hello world"}'
cap error_embed_unknown_model $E/v1/embeddings -H "$J" -d '{"model":"no-such-model","input":"hi"}'
cap error_chat_on_embed_server $E/v1/chat/completions -H "$J" -d '{"model":"tiny-embed",'"$MSG"'}'
cap metrics_embed         $E/metrics
cap pooling_embed         $E/pooling -H "$J" -d '{"model":"tiny-embed","input":["Hello world","The quick brown fox"]}'
cap pooling_embed_base64  $E/pooling -H "$J" -d '{"model":"tiny-embed","input":"Hello world","encoding_format":"base64"}'
cap cohere_embed          $E/v2/embed -H "$J" -d '{"model":"tiny-embed","texts":["Hello world","The quick brown fox"]}'
cap cohere_embed_types    $E/v2/embed -H "$J" -d '{"model":"tiny-embed","texts":["Hello world"],"embedding_types":["float","binary","ubinary","base64"]}'
cap error_pooling_wrong_task $E/pooling -H "$J" -d '{"model":"tiny-embed","input":"hi","task":"classify"}'
cap error_cohere_embed_no_input $E/v2/embed -H "$J" -d '{"model":"tiny-embed"}'
cap error_classify_on_embed_server $E/classify -H "$J" -d '{"model":"tiny-embed","input":"hi"}'
;; esac
case "${1:-all}" in rerank|all)
K='Authorization: Bearer sk-test'
cap models_rerank         $R/v1/models -H "$K"
cap rerank                $R/v1/rerank -H "$J" -H "$K" -d '{"model":"tiny-rerank","query":"What is the capital of France?","documents":["Paris is the capital of France.","The sky is blue.","Count from one to ten."]}'
cap rerank_top_n          $R/v1/rerank -H "$J" -H "$K" -d '{"model":"tiny-rerank","query":"capital of France","documents":["Paris","blue sky","ten"],"top_n":2}'
cap rerank_no_v1          $R/rerank -H "$J" -H "$K" -d '{"model":"tiny-rerank","query":"capital of France","documents":["Paris","blue sky"]}'
cap score                 $R/v1/score -H "$J" -H "$K" -d '{"model":"tiny-rerank","text_1":"capital of France","text_2":["Paris","blue sky"]}'
cap error_wrong_api_key   $R/v1/rerank -H "$J" -H 'Authorization: Bearer wrong-key' -d '{"model":"tiny-rerank","query":"q","documents":["d"]}'
cap error_missing_api_key $R/v1/models
cap health_with_api_key_unauthenticated $R/health
cap error_rerank_unknown_model $R/v1/rerank -H "$J" -H "$K" -d '{"model":"no-such-model","query":"q","documents":["d"]}'
cap classify              $R/classify -H "$J" -H "$K" -d '{"model":"tiny-rerank","input":["Hello world","The quick brown fox"]}'
cap classify_no_api_key   $R/classify -H "$J" -d '{"model":"tiny-rerank","input":"Hello world"}'
cap pooling_classify      $R/pooling -H "$J" -H "$K" -d '{"model":"tiny-rerank","input":"Hello world"}'
cap error_classify_missing_input $R/classify -H "$J" -H "$K" -d '{"model":"tiny-rerank"}'
cap error_classify_unknown_model $R/classify -H "$J" -H "$K" -d '{"model":"no-such-model","input":"hi"}'
cap error_classify_prompt_too_long $R/classify -H "$J" -H "$K" -d '{"model":"tiny-rerank","input":"'"$(printf 'hello %.0s' {1..600})"'"}'
cap error_cohere_embed_on_rerank_server $R/v2/embed -H "$J" -H "$K" -d '{"model":"tiny-rerank","texts":["hi"]}'
;; esac
case "${1:-all}" in lora|all)
cap models_chat_lora      $L/v1/models
cap chat_lora             $L/v1/chat/completions -H "$J" -d '{"model":"tiny-sql-lora",'"$MSG"',"max_tokens":8,"temperature":0}'
cap chat_stream_usage_lora $L/v1/chat/completions -H "$J" -d '{"model":"tiny-sql-lora",'"$MSG"',"max_tokens":3,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}'
cap completions_lora      $L/v1/completions -H "$J" -d '{"model":"tiny-sql-lora","prompt":"Once upon a time","max_tokens":8,"temperature":0}'
cap tokenize_lora         $L/tokenize -H "$J" -d '{"model":"tiny-sql-lora","prompt":"Hello world"}'
cap error_unknown_model_lora_server $L/v1/chat/completions -H "$J" -d '{"model":"no-such-model",'"$MSG"',"max_tokens":4}'
cap error_load_lora_adapter_route $L/v1/load_lora_adapter -H "$J" -d '{"lora_name":"x","lora_path":"/nowhere"}'
;; esac
case "${1:-all}" in messages|all)
# Anthropic Messages API on the chat server (started with --enable-auto-tool-choice --tool-call-parser hermes)
AM='"messages":[{"role":"user","content":"Say hello"}]'
TOOL='"tools":[{"name":"get_weather","description":"Weather of a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]'
cap messages_nonstream    $C/v1/messages -H "$J" -d '{"model":"tiny-chat","system":"You are terse.",'"$AM"',"max_tokens":8,"temperature":0}'
cap messages_nonstream_blocks $C/v1/messages -H "$J" -d '{"model":"tiny-chat","system":[{"type":"text","text":"You are terse."}],"messages":[{"role":"user","content":[{"type":"text","text":"Say"},{"type":"text","text":"hello"}]},{"role":"assistant","content":"Hi"},{"role":"user","content":"Again"}],"max_tokens":6,"temperature":0}'
cap messages_stream       $C/v1/messages -H "$J" -d '{"model":"tiny-chat","system":"You are terse.",'"$AM"',"max_tokens":5,"temperature":0,"stream":true}'
cap messages_tool_named   $C/v1/messages -H "$J" -d '{"model":"tiny-chat",'"$AM"',"max_tokens":40,"temperature":0,'"$TOOL"',"tool_choice":{"type":"tool","name":"get_weather"}}'
cap messages_tool_named_stream $C/v1/messages -H "$J" -d '{"model":"tiny-chat",'"$AM"',"max_tokens":40,"temperature":0,"stream":true,'"$TOOL"',"tool_choice":{"type":"tool","name":"get_weather"}}'
cap messages_count_tokens $C/v1/messages/count_tokens -H "$J" -d '{"model":"tiny-chat","system":"You are terse.",'"$AM"'}'
cap error_messages_no_max_tokens $C/v1/messages -H "$J" -d '{"model":"tiny-chat",'"$AM"'}'
cap error_messages_max_tokens_0 $C/v1/messages -H "$J" -d '{"model":"tiny-chat",'"$AM"',"max_tokens":0}'
cap error_messages_not_a_list $C/v1/messages -H "$J" -d '{"model":"tiny-chat","messages":"hi","max_tokens":4}'
cap error_messages_wrong_role $C/v1/messages -H "$J" -d '{"model":"tiny-chat","messages":[{"role":"tool","content":"hi"}],"max_tokens":4}'
cap error_messages_unknown_model $C/v1/messages -H "$J" -d '{"model":"no-such-model",'"$AM"',"max_tokens":4}'
cap error_messages_unknown_model_stream $C/v1/messages -H "$J" -d '{"model":"no-such-model",'"$AM"',"max_tokens":4,"stream":true}'
cap error_messages_prompt_too_long $C/v1/messages -H "$J" -d '{"model":"tiny-chat","messages":[{"role":"user","content":"'"$(printf 'hello %.0s' {1..600})"'"}],"max_tokens":4}'
cap error_messages_max_tokens_too_large $C/v1/messages -H "$J" -d '{"model":"tiny-chat",'"$AM"',"max_tokens":100000}'
cap error_messages_bad_block $C/v1/messages -H "$J" -d '{"model":"tiny-chat","messages":[{"role":"user","content":[{"type":"nope","text":"x"}]}],"max_tokens":4}'
cap error_messages_malformed_json $C/v1/messages -H "$J" -d '{"model":"tiny-chat", "messages": [}'
;; esac
