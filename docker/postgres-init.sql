-- One journal database per island (islands share nothing), and the serving cluster's split-brain lease. Runs once, on
-- the postgres volume's first start (on an older volume: docker compose exec postgres createdb -U islands serving).
CREATE DATABASE expert_0 OWNER islands;
CREATE DATABASE expert_1 OWNER islands;
CREATE DATABASE expert_2 OWNER islands;
CREATE DATABASE expert_3 OWNER islands;
CREATE DATABASE router OWNER islands;
CREATE DATABASE serving OWNER islands;
