start 0 chain_admpo_hopper_mr ./chain_admpo.sh hopper-medium-replay 0.1
