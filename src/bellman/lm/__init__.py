"""Language models and the ChatGPT recipe: pretraining, SFT, a reward model, RLHF (PPO), DPO.

    data.py          corpora (files, folders, fortunes, bible, pydoc), splits, JSONL readers
    tokenizer.py     byte-level BPE (`tokenizers`), PAD/EOS, `tokenize_pair`
    batch.py         the one (prompt, response) batch layout: `TokenBatch`, `pack`
    model.py         a small GPT-2 (`transformers`), checkpoint arrays, RewardModel, generate
    sampling.py      greedy/temperature/top-k/top-p sampling, response log-probs
    rewards.py       rule-based judges: sentiment, non-toxicity, hallucination, safety,
                     quality; `judge_rank`, `check_prompts` (a judge's prompts only)
    tasks.py         `bellman lm task`: the use cases' data (prompts, demonstrations, corpus)
    pretrain.py      `bellman lm pretrain`: next-token prediction, held-out perplexity
    sft.py           `bellman lm demos`, `bellman lm sft`: loss on response tokens only
    reward_model.py  `bellman lm label`, `bellman lm reward`: -log sigmoid(r_w - r_l)
    rlhf_ppo.py      `bellman lm ppo`: PPO with a per-token KL penalty, PPO-ptx, GRPO/RLOO
    dpo.py           `bellman lm dpo`: direct preference optimization
    runs.py          run directories, checkpoints and model loading the steps share

Nothing here is imported by `import bellman`; torch and transformers load when a step runs.
"""
