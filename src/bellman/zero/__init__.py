"""The AlphaGo series on board games: AlphaZero (self-play, training, arena, Elo).

alphazero.py   the algorithm (`bellman train alphazero --env tictactoe|connect4|go9`)
play.py        a trained agent in the terminal (`bellman play`) and on a stream (`bellman move`)
"""
