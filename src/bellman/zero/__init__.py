"""The AlphaGo series on board games: AlphaZero (self-play, training, arena, Elo).

alphazero.py   the algorithm (`bellman train alphazero --env tictactoe|connect4|go9`): its
               config, the learner (step 5) and the loop
network.py     f_theta as the search's evaluator, its weights as bytes, loading a checkpoint's
selfplay.py    self-play games (many at once, one network call per wave), the replay window
arena.py       the arena, its players and the Elo table; the agent against a fixed opponent as
               a gymnasium env (`bellman eval`)
play.py        a trained agent in the terminal (`bellman play`) and on a stream (`bellman move`)
"""
