<?php
// A crawler stand-in for one merchant: pyvm2 gives each copy its index in NODE_APP_INSTANCE.
$merchant = (int) (getenv('NODE_APP_INSTANCE') ?: 0);
$page = 0;
while (true) {
    $page++;
    echo "merchant {$merchant}: crawled page {$page}\n";
    sleep(5);
}
